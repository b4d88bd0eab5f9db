// SPDX-License-Identifier: Apache-2.0
// cuda_moe_workspace.h - the per-forward device buffers of a layer (private to the cuda_moe
// files): one arena, carved by moe_layer::ensure_workspace, grown when T grows.
#pragma once

#include "cuda_moe.h"

namespace moereg::cuda {

// One device arena carved into the per-forward buffers; reallocated when T grows.
struct moe_layer::workspace {
  int tokens = 0;
  void* arena = nullptr;
  __nv_bfloat16* xb = nullptr;
  float* logits = nullptr;
  permutation perm;
  __nv_bfloat16* h = nullptr;
  float* gate = nullptr;
  __nv_bfloat16* hs = nullptr;  // the shared expert's h (it runs beside the routed experts)
  float* x_amax = nullptr;     // exact-product F8 kernels: per token
  unsigned* h_amax = nullptr;  // and per sorted row (moe_kernels.cuh)
  void* x_in = nullptr;  // host-path staging: x (up to f32), ids (i64), weights, out
  int64_t* ids_in = nullptr;
  float* w_in = nullptr;
  float* out = nullptr;
};

}  // namespace moereg::cuda
