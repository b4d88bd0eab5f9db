// SPDX-License-Identifier: Apache-2.0
// cuda_moe_decode.cu - how the layer launches its GEMMs at decode: the backend options that
// shape them (narrow tiles, dependent launches), the slot-tile pass of T = 1, where a forward
// is two kernels (see moe_kernels.cuh: gemm_problem::slot_ids), and F8 experts' T = 1 pass on
// the matrix-vector kernels (f8_decode=gemv, f8_gemv.cuh).
#include <cstdint>

#include "cuda_moe.h"
#include "cuda_moe_workspace.h"

namespace moereg::cuda {

namespace {
bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }
}  // namespace

void moe_layer::decode_launch(gemm_problem& p) const {
  p.sm_count = sm_count_;
  p.narrow = tuning_.narrow == "off" ? 0 : tuning_.narrow == "fill" ? 2 : 1;
  p.pdl = tuning_.pdl;
}

gemm_problem moe_layer::routed_problem(const __nv_bfloat16* x, float* out) const {
  gemm_problem p;
  p.x = x;
  p.w13 = w13_;
  p.w2 = w2_;
  p.w13_f8 = w13_f8_;
  p.w2_f8 = w2_f8_;
  p.w13_scale = w13_scale_;
  p.w2_scale = w2_scale_;
  if (f8_) {
    p.scale_b0 = kernel_block(scale_b0_);
    p.scale_b1 = kernel_block(scale_b1_);
  }
  p.hidden = static_cast<int>(H_);
  p.inter = static_cast<int>(I_);
  p.h = ws_->h;
  p.out = out;
  decode_launch(p);
  return p;
}

bool moe_layer::slot_tiles_apply(const pass_plan& pl, const void* x, bool x_bf16, const void* ids, int tokens,
                                 const float* out) const {
  // The GEMMs read x in place (bf16, 16-byte rows for cp.async) and zero out with float4
  // stores; F8 experts need each row's magnitude (the prepare kernel), a shared expert adds
  // into out from its own stream (so out must be zeroed before both start).
  return tuning_.slot_tiles && !pl.blas && tokens == 1 && ids && x_bf16 && !f8_ && Is_ == 0 && aligned16(x) &&
         aligned16(out) && H_ % 8 == 0;
}

bool moe_layer::run_slot_tiles(const pass_plan& pl, const void* x, bool x_bf16, const void* ids, bool ids_i64,
                               const float* weights, int tokens, float* out, cudaStream_t stream) {
  if (!slot_tiles_apply(pl, x, x_bf16, ids, tokens, out)) return false;
  gemm_problem p = routed_problem(static_cast<const __nv_bfloat16*>(x), out);
  p.slot_ids = ids;
  p.slot_ids_i64 = ids_i64;
  p.num_experts = static_cast<int>(E_);
  p.top_k = K_;
  p.sorted_weight = weights;
  p.grid_rows = K_;
  p.zero_out = out;
  p.zero_count = H_;
  last_launch_ = launch_experts(p, pl.tiles, stream);
  return true;
}

bool moe_layer::f8_gemv_applies(const pass_plan& pl, int tokens) const {
  return tuning_.f8_decode == "gemv" && tuning_.tiles == "auto" && f8_ && !pl.blas && tokens == 1 &&
         f8_gemv_fits(static_cast<int>(H_), static_cast<int>(I_), shared_f8_ ? static_cast<int>(Is_) : 0,
                      kernel_block(scale_b1_));
}

void moe_layer::run_f8_gemv(const void* ids, bool ids_i64, const float* weights, float* out, cudaStream_t stream) {
  f8_gemv_problem g;
  g.x = ws_->xb;
  g.hidden = static_cast<int>(H_);
  g.ids = ids;
  g.ids_i64 = ids_i64;
  g.weights = weights;
  g.top_k = K_;
  g.num_experts = static_cast<int>(E_);
  g.inter = static_cast<int>(I_);
  g.w13 = w13_f8_;
  g.w2 = w2_f8_;
  g.s13 = w13_scale_;
  g.s2 = w2_scale_;
  g.b0 = kernel_block(scale_b0_);
  g.b1 = kernel_block(scale_b1_);
  if (shared_f8_) {
    g.shared_inter = static_cast<int>(Is_);
    g.sw13 = sw13_f8_;
    g.sw2 = sw2_f8_;
    g.ss13 = sw13_scale_;
    g.ss2 = sw2_scale_;
    if (has_shared_gate_) {
      launch_shared_gate(ws_->xb, sgate_, 1, static_cast<int>(H_), ws_->gate, stream);
      g.shared_gate = ws_->gate;
    }
  }
  g.h = reinterpret_cast<float*>(ws_->h);  // [top_k + 1, max(I, Is)] floats fit (ensure_workspace)
  g.out = out;
  launch_f8_gemv(g, stream);
}

}  // namespace moereg::cuda
