// SPDX-License-Identifier: Apache-2.0
// backend_entry.cu - the moereg_backend_api table of the CUDA backend. Every slot catches
// everything (the SDK's MOEREG_API_END): no exception crosses the C boundary.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "cuda_moe.h"
#include "moereg/abi/moereg_backend.h"
#include "moereg/abi/moereg_cuda_stream.h"

namespace {

const moereg_host_api* host = nullptr;

moereg_backend* as_handle(moereg::cuda::moe_layer* l) { return reinterpret_cast<moereg_backend*>(l); }
moereg::cuda::moe_layer* as_layer(moereg_backend* b) { return reinterpret_cast<moereg::cuda::moe_layer*>(b); }

void write_reason(char* reason, size_t size, const std::string& text) {
  if (!reason || size == 0) return;
  std::snprintf(reason, size, "%s", text.c_str());
}

int32_t probe(char* reason, size_t reason_size) noexcept {
  try {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      write_reason(reason, reason_size, std::string("no usable CUDA driver or device: ") + cudaGetErrorString(e));
      cudaGetLastError();
      return 0;
    }
    if (count == 0) {
      write_reason(reason, reason_size, "no CUDA device present");
      return 0;
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
      write_reason(reason, reason_size, "cannot read the properties of CUDA device 0");
      return 0;
    }
    if (prop.major != 9 || prop.minor != 0) {
      write_reason(reason, reason_size,
                   std::string(prop.name) + " has compute capability " + std::to_string(prop.major) + "." +
                       std::to_string(prop.minor) + "; this build is for 9.0 (sm_90a, H100/H200)");
      return 0;
    }
    write_reason(reason, reason_size, std::string(prop.name) + " (sm_90)");
    return 90;
  } catch (...) {
    write_reason(reason, reason_size, "probe failed");
    return 0;
  }
}

// An older host's weights end before the fields of later APIs: read only what it wrote.
moereg_moe_weights host_weights(const moereg_moe_weights* weights) {
  moereg_moe_weights w{};
  std::memcpy(&w, weights,
              host->api_version >= 3   ? sizeof w
              : host->api_version == 2 ? offsetof(moereg_moe_weights, shared_w13_scale)
                                       : offsetof(moereg_moe_weights, weight_quant));
  return w;
}

moereg_status* create(const moereg_moe_weights* weights, const moereg_routing_params* routing,
                      const moereg_backend_options* options, moereg_backend** out) noexcept {
  MOEREG_API_BEGIN
  if (!weights || !out) return host->status_create(MOEREG_INVALID_ARGUMENT, "create: weights and out are required");
  *out = nullptr;
  *out = as_handle(new moereg::cuda::moe_layer(host_weights(weights), routing, options));
  return nullptr;
  MOEREG_API_END
}

moereg_status* create_with_options(const moereg_moe_weights* weights, const moereg_routing_params* routing,
                                   const moereg_backend_options* options, const moereg_backend_option* kv, size_t count,
                                   moereg_backend** out) noexcept {
  MOEREG_API_BEGIN
  if (!weights || !out) return host->status_create(MOEREG_INVALID_ARGUMENT, "create: weights and out are required");
  if (count && !kv) return host->status_create(MOEREG_INVALID_ARGUMENT, "create: options_kv is NULL with count > 0");
  *out = nullptr;
  const moereg::cuda::tuning t = moereg::cuda::tuning::parse(kv, count);
  *out = as_handle(new moereg::cuda::moe_layer(host_weights(weights), routing, options, t));
  return nullptr;
  MOEREG_API_END
}

moereg_status* forward(moereg_backend* b, const moereg_tensor_view* x, const moereg_tensor_view* ids,
                       const moereg_tensor_view* w, moereg_tensor_view* out) noexcept {
  MOEREG_API_BEGIN
  if (!b || !x || !ids || !w || !out)
    return host->status_create(MOEREG_INVALID_ARGUMENT, "forward: null handle or view");
  as_layer(b)->forward(*x, *ids, *w, *out);
  return nullptr;
  MOEREG_API_END
}

void destroy(moereg_backend* b) noexcept {
  try {
    delete as_layer(b);
  } catch (...) {
  }
}

moereg_status* route(moereg_backend* b, const moereg_tensor_view* x, moereg_tensor_view* ids,
                     moereg_tensor_view* w) noexcept {
  MOEREG_API_BEGIN
  if (!b || !x || !ids || !w) return host->status_create(MOEREG_INVALID_ARGUMENT, "route: null handle or view");
  as_layer(b)->route(*x, *ids, *w);
  return nullptr;
  MOEREG_API_END
}

moereg_status* alloc(moereg_backend* b, size_t bytes, void** ptr) noexcept {
  MOEREG_API_BEGIN
  if (!b || !ptr) return host->status_create(MOEREG_INVALID_ARGUMENT, "alloc: null handle or pointer");
  *ptr = as_layer(b)->alloc(bytes);
  return nullptr;
  MOEREG_API_END
}

void free_slot(moereg_backend* b, void* ptr) noexcept {
  try {
    if (b) as_layer(b)->release(ptr);
  } catch (...) {
  }
}

moereg_status* copy(moereg_backend* b, void* dst, const void* src, size_t bytes, int32_t kind) noexcept {
  MOEREG_API_BEGIN
  if (!b) return host->status_create(MOEREG_INVALID_ARGUMENT, "copy: null handle");
  as_layer(b)->copy(dst, src, bytes, kind);
  return nullptr;
  MOEREG_API_END
}

moereg_status* synchronize(moereg_backend* b) noexcept {
  MOEREG_API_BEGIN
  if (!b) return host->status_create(MOEREG_INVALID_ARGUMENT, "synchronize: null handle");
  as_layer(b)->synchronize();
  return nullptr;
  MOEREG_API_END
}

moereg_status* describe(moereg_backend* b, moereg_sink sink) noexcept {
  MOEREG_API_BEGIN
  if (!b || !sink.write) return host->status_create(MOEREG_INVALID_ARGUMENT, "describe: null handle or sink");
  std::string s = as_layer(b)->describe();
  sink.write(sink.context, s.data(), s.size());
  return nullptr;
  MOEREG_API_END
}

moereg_status* set_stream(moereg_backend* b, void* stream) noexcept {
  MOEREG_API_BEGIN
  if (!b) return host->status_create(MOEREG_INVALID_ARGUMENT, "set_stream: null handle");
  as_layer(b)->set_stream(static_cast<cudaStream_t>(stream));
  return nullptr;
  MOEREG_API_END
}

const moereg_cuda_stream_api stream_api = {1, set_stream};

void* get_extension(const char* name) noexcept {
  if (name && std::strcmp(name, MOEREG_CUDA_STREAM_EXTENSION) == 0)
    return const_cast<moereg_cuda_stream_api*>(&stream_api);
  return nullptr;
}

const moereg_backend_api api = {
    MOEREG_PLUGIN_API_VERSION, "cuda", "0.1.0", probe, create, forward, destroy, route, alloc, free_slot, copy,
    synchronize, describe, get_extension, create_with_options};

}  // namespace

extern "C" MOEREG_EXPORT const moereg_backend_api* moereg_backend_entry(const moereg_host_api* h) {
  if (!h || h->api_version < MOEREG_PLUGIN_API_MIN || !h->status_create) return nullptr;
  host = h;
  return &api;
}
