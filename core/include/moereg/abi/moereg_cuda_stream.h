/* SPDX-License-Identifier: Apache-2.0 */
/* moereg_cuda_stream.h - the CUDA backend's stream extension: run a layer on the caller's
 * CUDA stream, so that the caller can order the layer with its own work without a
 * synchronization and capture the forward into its own CUDA graph (vLLM- or PyTorch-style).
 *
 *   const moereg_cuda_stream_api* s = api->get_extension(MOEREG_CUDA_STREAM_EXTENSION);
 *   if (s && s->version >= 1) s->set_stream(layer, (void*)my_cuda_stream);
 *
 * After set_stream, forward / route / copy / synchronize of that layer enqueue on the given
 * stream (a cudaStream_t; NULL gives the layer its own stream back). While that stream is
 * being captured, forward records its kernels into the capture: it does no host
 * synchronization and no allocation, provided an earlier (uncaptured) forward has already
 * seen at least as many tokens (the workspace only grows outside a capture), and it keeps
 * every size on the kernels (the cuBLAS path reads expert sizes back to the host, which a
 * capture forbids). Host-memory views cannot be captured (they copy and synchronize).
 * The caller keeps the stream alive while the layer uses it.
 */
#ifndef MOEREG_CUDA_STREAM_H
#define MOEREG_CUDA_STREAM_H

#include "moereg_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOEREG_CUDA_STREAM_EXTENSION "moereg_cuda_stream"

typedef struct moereg_cuda_stream_api {
  uint32_t version; /* 1 */
  /* stream: a cudaStream_t of the layer's device, or NULL for the layer's own stream.
   * Waits for the work already queued on the previous stream first. */
  moereg_status* (*set_stream)(moereg_backend* layer, void* stream)MOEREG_NOEXCEPT;
} moereg_cuda_stream_api;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOEREG_CUDA_STREAM_H */
