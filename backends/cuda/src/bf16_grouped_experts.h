// SPDX-License-Identifier: Apache-2.0
// bf16_grouped_experts.h - bf16 experts on moereg's grouped wgmma GEMM (bf16_grouped_gemm.cuh):
// each projection of every hit expert in one launch, no host round trip (the expert offsets stay
// on the device; only a pass that needs larger work buffers than any before synchronizes once to
// allocate them), the outputs written as rows and combined per token (expert_rows.h).
//
// A pass: the routed rows copied into sorted order (or gathered by the GEMM) -> gate/up GEMM (bf16 gate | up rows) ->
// h = SiLU(gate) * up in bf16 (or the two fused) -> down GEMM -> the combine. The same arithmetic as the cuBLAS
// path (bf16 operands, f32 sums, bf16 outputs between the steps). A shared expert of the routed
// experts' size can run in the same launches as one more expert whose rows are every token.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>

#include "bf16_grouped_gemm.cuh"
#include "expert_rows.h"

namespace moereg::cuda {

class bf16_grouped_experts {
 public:
  // Whether experts of these sizes fit: hidden a multiple of 128, inter of 64, at most 4096
  // experts (with the shared expert). Otherwise `why` says which.
  static bool fits(long long experts, long long hidden, long long inter, std::string* why = nullptr);

  // w13 [E, 2I, H] and w2 [E, H, I] bf16: the layer's device arrays, which must outlive this object.
  // fused_silu: SiLU(gate) * up in the gate/up GEMM's epilogue where I is a multiple of 128 (no
  // [rows, 2I] gate/up buffer, one launch less; the same bits), else its own pass. gather: the
  // gate/up GEMM reads each sorted row from x through the routing's index (no sorted copy of x,
  // one launch less; the same bits) where x's rows are 16-byte aligned, else the copy is made.
  bf16_grouped_experts(const __nv_bfloat16* w13, const __nv_bfloat16* w2, int experts, int hidden, int inter,
                       bool fused_silu = false, bool gather = false);
  // The layer's shared expert in the same launches (before the first pass): w13 [2I, H] and
  // w2 [H, I] bf16, the routed experts' sizes; each pass then adds gate[t] (or 1 without
  // `gate`) times its output for every token.
  void add_shared(const __nv_bfloat16* w13, const __nv_bfloat16* w2);
  ~bf16_grouped_experts();
  bf16_grouped_experts(const bf16_grouped_experts&) = delete;
  bf16_grouped_experts& operator=(const bf16_grouped_experts&) = delete;

  // Routed experts of one pass (and the shared expert, times shared_gate [T] where given),
  // `out` [T, H] stored. Enqueued on `stream`, no synchronization (except once when the work
  // buffers grow).
  void run_routed(const routed_rows& in, float* out, cudaStream_t stream, const float* shared_gate = nullptr);
  const std::string& path() const { return path_; }

 private:
  void ensure(int rows, cudaStream_t stream);

  int E_, H_, I_;
  bool fused_silu_, gather_;
  bf16_matrix w13_, w2_;
  grouped_rows rows_;             // the shared expert, when it joins, as expert E
  bf16_matrix sw13_{}, sw2_{};
  int capacity_ = 0;              // rows the buffers hold
  __nv_bfloat16* xs_ = nullptr;   // [capacity, H]: the sorted rows, then (down's output) y
  __nv_bfloat16* g_ = nullptr;    // [capacity, 2I]: gate | up
  __nv_bfloat16* h_ = nullptr;    // [capacity, I]
  bf16_matrix xs_map_{}, h_map_{};
  std::string path_;
};

}  // namespace moereg::cuda
