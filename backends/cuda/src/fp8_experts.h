// SPDX-License-Identifier: Apache-2.0
// fp8_experts.h - the compute-bound path of F8_E4M3 experts with 128 x 128 block scales: FP8
// tensor cores through cuBLASLt's block-scaled matmul (Hopper: weights with one f32 scale per
// 128 x 128 block, activations with one per 128 columns of a row), as DeepSeek-V3 was trained
// and as serving engines run it. The activations are quantized on the fly: each row's 128-
// column groups to e4m3 with scale amax / 448 (x as the layer gets it; h = SiLU(gate) * up
// from the float values, before any bf16 rounding). That quantization is the price: about 3 %
// relative L2 from the dequantized bf16 layer on random layers (docs/cuda.md states what was
// measured), where the exact-product kernels stay within bf16 rounding; the backend option
// f8_activations (cuda_moe.h) chooses. The weights are read as the upload left them, each
// 16-byte group in mma fragment order; the activations are written in the same order, so
// every product pairs the same k and the sums are those of the natural order.
// cuBLASLt is dlopen'ed (libcublasLt.so.13) on first use, as cuBLAS is.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "expert_rows.h"

namespace moereg::cuda {

class fp8_experts {
 public:
  // True when libcublasLt.so.13 and every symbol used here were found; otherwise `why` says.
  static bool available(std::string* why = nullptr);
  static std::string version();
  // Whether experts of these sizes and scale blocks fit the block-scaled matmul: 128 x 128
  // blocks, H and I multiples of 128 (whole blocks, and gate and up grids that join into
  // the fused [2I, H] matrix's). Otherwise `why` says which.
  static bool fits(long long hidden, long long inter, long long b0, long long b1, std::string* why = nullptr);

  // w13_scale [E, 2I/128, H/128] and w2_scale [E, H/128, I/128]: the layer's device scales on
  // the ABI's grids (copied with each row padded to a multiple of 4 blocks where cuBLASLt's
  // layout needs it).
  fp8_experts(cudaStream_t stream, const float* w13_scale, const float* w2_scale, int experts, int hidden, int inter);
  ~fp8_experts();
  fp8_experts(const fp8_experts&) = delete;
  fp8_experts& operator=(const fp8_experts&) = delete;

  // Routed experts, as cublas_experts::run_routed: the expert offsets are read back (one
  // stream synchronization), one gate/up and one down matmul per hit expert, `out` stored.
  void run_routed(const routed_rows& in, const uint8_t* w13, const uint8_t* w2, float* out);

 private:
  struct layouts;  // the cuBLASLt descriptors of the two projections and the algorithms found
  void ensure(size_t rows, size_t padded);
  // One expert's projection (`which` 0 gate/up, 1 down): its m rows a [m, K] (e4m3, 1x128
  // scales) times its weights b [N, K] (128x128 scales), written column-major to d (ld ldd).
  void matmul(int which, int m, int ldd, const uint8_t* a, const float* a_scale, const uint8_t* b,
              const float* b_scale, __nv_bfloat16* d, int lane);
  // One projection's matmuls, one per hit expert, spread over the lanes: an expert's matmul
  // alone can leave SMs idle (a few hundred rows are one partial wave of tiles), side by side
  // they fill the machine. Forks from and joins back to stream_.
  template <class F>
  void over_lanes(F&& each_expert);

  cudaStream_t stream_;
  static constexpr int lanes = 4;
  cudaStream_t lane_[lanes] = {};
  cudaEvent_t fork_ = nullptr, join_[lanes] = {};
  int E_, H_, I_;
  void* handle_ = nullptr;
  layouts* lay_ = nullptr;
  void* workspace_ = nullptr;  // lanes slices of workspace_bytes_
  size_t workspace_bytes_ = 0;
  const float* s13_ = nullptr;  // weight scales, rows padded to a multiple of 4 blocks
  const float* s2_ = nullptr;
  int s13_pitch_ = 0, s2_pitch_ = 0;  // floats per block row
  float* padded_ = nullptr;           // owned copy when padding was needed
  // Work buffers over R padded rows (each hit expert's block rounded up to 16 rows).
  uint8_t* xq_ = nullptr;             // [R, H] e4m3, fragment order
  float* xs_ = nullptr;               // [R * H/128] per-expert blocks [H/128][m] (fp8_experts.cu)
  __nv_bfloat16* g_ = nullptr;        // [2I][R]: gate|up, column-major as the matmul writes it
  uint8_t* hq_ = nullptr;             // [R, I]
  float* hs_ = nullptr;               // [R * I/128]
  __nv_bfloat16* yt_ = nullptr;       // [H][R]: down, column-major
  __nv_bfloat16* y_ = nullptr;        // [rows, H]: down, sorted rows (the combine's input)
  size_t rows_ = 0, padded_rows_ = 0;
  int* host_offsets_ = nullptr;       // pinned: [E + 1] offsets, then [E + 1] padded offsets
  int* pad_ = nullptr;                // device copy of the padded offsets
};

}  // namespace moereg::cuda
