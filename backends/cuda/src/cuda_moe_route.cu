// SPDX-License-Identifier: Apache-2.0
// cuda_moe_route.cu - the layer's router on the device: logits, then top-k as the family's
// routing says (moe_kernels.cuh), with host or device views (see cuda_moe.h).
#include "cuda_moe.h"
#include "cuda_moe_workspace.h"
#include "host_views.h"

namespace moereg::cuda {

using namespace host;

long long moe_layer::check_routing_views(const moereg_tensor_view& x, const moereg_tensor_view& ids,
                                          const moereg_tensor_view& weights, long long K) const {
  if (x.rank != 2) throw invalid_argument("x: rank " + std::to_string(x.rank) + ", expected [T, H]");
  const long long T = x.shape[0];
  expect(x, "x", {T, H_});
  expect(ids, "topk_ids", {T, K});
  expect(weights, "topk_weights", {T, K});
  if (x.dtype != MOEREG_DTYPE_F32 && x.dtype != MOEREG_DTYPE_BF16)
    throw invalid_argument(std::string("x: dtype ") + dtype_name(x.dtype) + ", expected F32 or BF16");
  if (ids.dtype != MOEREG_DTYPE_I32 && ids.dtype != MOEREG_DTYPE_I64)
    throw invalid_argument(std::string("topk_ids: dtype ") + dtype_name(ids.dtype) + ", expected I32 or I64");
  if (weights.dtype != MOEREG_DTYPE_F32) throw invalid_argument("topk_weights must be F32");
  return T;
}

void moe_layer::route(const moereg_tensor_view& x, const moereg_tensor_view& ids, const moereg_tensor_view& weights) {
  check(cudaSetDevice(device_), "cudaSetDevice");
  if (!has_router_) throw invalid_argument("route: the layer was created without a router weight");
  const long long T = check_routing_views(x, ids, weights, K_);
  if (T == 0) return;
  ensure_workspace(static_cast<int>(T));
  const bool xb = x.dtype == MOEREG_DTYPE_BF16, i64 = ids.dtype == MOEREG_DTYPE_I64;
  const void* xd = x.data;
  if (x.memory == MOEREG_MEMORY_HOST) {
    check(cudaMemcpyAsync(ws_->x_in, x.data, static_cast<size_t>(T * H_) * elem_size(x.dtype), cudaMemcpyHostToDevice,
                          stream_),
          "x upload");
    xd = ws_->x_in;
  }
  launch_router_logits(xd, xb, router_, static_cast<int>(T), static_cast<int>(H_), static_cast<int>(E_), ws_->logits,
                       stream_);
  void* idd = ids.memory == MOEREG_MEMORY_DEVICE ? ids.data : ws_->ids_in;
  float* wd = weights.memory == MOEREG_MEMORY_DEVICE ? static_cast<float*>(weights.data) : ws_->w_in;
  // "Rounded to the activation dtype": a no-op for f32 activations, bf16 rounding for bf16 ones.
  route_config cfg = rcfg_;
  cfg.round_logits = rcfg_.round_logits && xb;
  launch_router_topk(ws_->logits, bias_, cfg, static_cast<int>(T), idd, i64, wd, stream_);
  if (ids.memory == MOEREG_MEMORY_HOST)
    check(cudaMemcpyAsync(ids.data, idd, static_cast<size_t>(T * K_) * elem_size(ids.dtype), cudaMemcpyDeviceToHost,
                          stream_),
          "ids download");
  if (weights.memory == MOEREG_MEMORY_HOST)
    check(cudaMemcpyAsync(weights.data, wd, static_cast<size_t>(T * K_) * 4, cudaMemcpyDeviceToHost, stream_),
          "weights download");
  if (ids.memory == MOEREG_MEMORY_HOST || weights.memory == MOEREG_MEMORY_HOST || x.memory == MOEREG_MEMORY_HOST)
    check(cudaStreamSynchronize(stream_), "route");
  else
    check(cudaGetLastError(), "route");
}

}  // namespace moereg::cuda
