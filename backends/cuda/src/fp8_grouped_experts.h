// SPDX-License-Identifier: Apache-2.0
// fp8_grouped_experts.h - the compute-bound path of F8_E4M3 experts with 128 x 128 block
// scales on moereg's own grouped FP8 GEMM (fp8_grouped_gemm.cuh): each projection of every
// hit expert in one launch, no host round trip (the expert offsets stay on the device; only a
// pass that needs larger work buffers than any before synchronizes once to allocate them), the
// outputs written as rows. The backend's graphs=on does not capture it yet.
//
// A pass: x quantized to e4m3 per 128 columns (f8_quantize.cuh), once per token (gather) or
// per routed row in sorted order -> gate/up GEMM -> h = SiLU(gate) * up from its bf16 output,
// quantized the same way (or, fused, in the gate/up GEMM's epilogue: no bf16 gate/up rows)
// -> down GEMM -> the combine (expert_rows.h). The activations' quantization is what
// separates it from the dequantized bf16 layer (~4 % relative L2; docs/cuda.md states what
// was measured). An F8 shared expert of the routed experts' size can run in the same
// launches as one more expert whose rows are every token (`shared` below).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>

#include "expert_rows.h"
#include "fp8_grouped_gemm.cuh"

namespace moereg::cuda {

class fp8_grouped_experts {
 public:
  // Whether experts of these sizes and scale blocks fit: 128 x 128 blocks, H and I multiples
  // of 128, at most 4096 experts. Otherwise `why` says which.
  static bool fits(long long experts, long long hidden, long long inter, long long b0, long long b1,
                   std::string* why = nullptr);

  // w13 [E, 2I, H] and w2 [E, H, I] e4m3 (fragment order), w13_scale [E, 2I/128, H/128] and
  // w2_scale [E, H/128, I/128]: the layer's device arrays, which must outlive this object.
  // gather: x is quantized once per token and the gate/up GEMM gathers each routed row's
  // token (else every routed row is quantized into its own sorted row first: top_k times the
  // bytes written and read).
  // wide: 128 x 256 GEMM tiles where they apply (fp8_grouped_gemm.cuh); fuse: with them, the
  // gate/up GEMM writes h = SiLU(gate) * up quantized (no bf16 gate/up rows; slower on an H100).
  fp8_grouped_experts(const uint8_t* w13, const uint8_t* w2, const float* w13_scale, const float* w2_scale, int experts,
                      int hidden, int inter, bool gather, bool wide, bool fuse);

  // The layer's shared expert in the same launches (before the first pass): w13 [2I, H] and
  // w2 [H, I] e4m3 (fragment order) with their 128 x 128 block scales, the routed experts'
  // sizes; each pass then adds gate[t] (or 1 without `gate`) times its output for every
  // token. Needs gather off (shares_with() says whether a layer qualifies).
  static bool shares_with(long long inter, long long shared_inter, bool gather) {
    return shared_inter == inter && !gather;
  }
  void add_shared(const uint8_t* w13, const uint8_t* w2, const float* w13_scale, const float* w2_scale);
  ~fp8_grouped_experts();
  fp8_grouped_experts(const fp8_grouped_experts&) = delete;
  fp8_grouped_experts& operator=(const fp8_grouped_experts&) = delete;

  // Routed experts of one pass (and the shared expert, times shared_gate [T] where given),
  // `out` [T, H] stored. Enqueued on `stream`, no synchronization (except once when the work
  // buffers grow).
  void run_routed(const routed_rows& in, float* out, cudaStream_t stream, const float* shared_gate = nullptr);
  // What a pass runs, for describe's last path: "wgmma_fp8 (...; gate/up 128x256, down 128x256
  // tiles; the shared expert as one more expert of both GEMMs)".
  const std::string& path() const { return path_; }

 private:
  void ensure(int rows, int tokens, cudaStream_t stream);
  // Whether the gate/up GEMM runs 128 x 256 tiles that write h (f8_grouped_problem::hq).
  bool fuse_silu() const { return fuse_ && f8_grouped_tile_columns(wide_, gather_, 2 * I_) == 256; }

  int E_, H_, I_;
  bool gather_, wide_, fuse_;
  const float *s13_, *s2_;
  f8_matrix w13_, w2_;
  grouped_rows rows_;  // the shared expert, when it joins, as expert E
  const float *ss13_ = nullptr, *ss2_ = nullptr;
  f8_matrix sw13_{}, sw2_{};
  int capacity_ = 0, pitch_ = 0;  // routed rows the buffers hold; scale column pitch (capacity rounded to 4)
  int xrows_ = 0, xpitch_ = 0;    // rows of xq_ (tokens with gather, else capacity) and its scales' pitch
  uint8_t* xq_ = nullptr;         // [xrows, H] e4m3: tokens (gather) or sorted rows
  float* xs_ = nullptr;           // [H/128][xpitch]
  __nv_bfloat16* g_ = nullptr;    // [capacity, 2I]: gate | up
  uint8_t* hq_ = nullptr;         // [capacity, I]
  float* hs_ = nullptr;           // [I/128][pitch]
  __nv_bfloat16* y_ = nullptr;    // [capacity, H]: down
  f8_matrix xq_map_{}, hq_map_{};
  std::string path_;  // set at construction (and by add_shared): fixed by the sizes and options
};

}  // namespace moereg::cuda
