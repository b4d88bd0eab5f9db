// SPDX-License-Identifier: Apache-2.0
// moe_kernels.cu - the grouped expert GEMMs' launches (routing and the permutation are in
// routing_kernels.cu and prepare_kernel.cu; the kernel itself in experts_gemm.cuh): the tile
// shapes, which one a pass and each of its GEMMs takes, and the launch as a dependent grid.
// The GEMMs read each expert's rows straight from the token order through an index (no
// gathered copy of x), fuse SiLU(gate) * up into the first GEMM's epilogue and the routing
// weight plus un-permute (float2 atomics) into the second's.
#include "moe_kernels.cuh"

#include "experts_gemm.cuh"

#include <stdexcept>
#include <string>
#include <type_traits>

namespace moereg::cuda {

namespace {

using gemm::experts_gemm_kernel;

template <int BM_, int BN_, int BK_, int WM_, int WN_, int STAGES_, int WK_ = 1>
struct tile_shape {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, WM = WM_, WN = WN_, STAGES = STAGES_, WK = WK_;
};

template <class S, bool GATE_UP, bool F8, bool F16A>
void launch_gemm(const gemm_problem& p, cudaStream_t stream) {
  constexpr int threads = S::WM * S::WN * S::WK * 32;
  constexpr int smem = F8 ? S::STAGES * (S::BM * 2 + S::BN) * S::BK : S::STAGES * (S::BM + S::BN) * S::BK * 2;
  auto kernel = experts_gemm_kernel<S::BM, S::BN, S::BK, S::WM, S::WN, S::STAGES, GATE_UP, F8, S::WK, F16A>;
  static const bool configured = [&] {
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    return true;
  }();
  (void)configured;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(GATE_UP ? (p.inter + S::BN / 2 - 1) / (S::BN / 2) : (p.hidden + S::BN - 1) / S::BN, p.grid_rows);
  cfg.blockDim = dim3(threads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = p.pdl ? 1 : 0;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, p);
  if (e != cudaSuccess) {
    cudaGetLastError();  // launch errors are not sticky: clear it, report it
    throw std::runtime_error(std::string("CUDA launch of experts ") + (GATE_UP ? "gate_up" : "down") +
                             " GEMM failed: " + cudaGetErrorString(e));
  }
}

// Each GEMM on the widest of the three shapes that the narrow option allows (p.narrow: 1 =
// 64 columns where 128 would give fewer CTAs than the SMs; 2 = the widest that gives at least
// two CTAs an SM, else the narrowest; 0 = always Wide).
template <class Wide, class Narrow, class Narrowest, bool F8, bool F16A = false>
launch_shape run_experts(const gemm_problem& p, cudaStream_t stream) {
  auto ctas = [&](int cols, int bn) { return static_cast<long long>((cols + bn - 1) / bn) * p.grid_rows; };
  auto pick = [&](int cols) {
    if (p.narrow == 1) return ctas(cols, Wide::BN) < p.sm_count ? Narrow::BN : Wide::BN;
    if (p.narrow == 2) {
      for (int bn : {Wide::BN, Narrow::BN})
        if (ctas(cols, bn) >= 2LL * p.sm_count) return bn;
      return Narrowest::BN;
    }
    return Wide::BN;
  };
  auto launch = [&](auto gate_up, int bn) {
    constexpr bool G = decltype(gate_up)::value;
    if (bn == Narrowest::BN) launch_gemm<Narrowest, G, F8, F16A>(p, stream);
    else if (bn == Narrow::BN) launch_gemm<Narrow, G, F8, F16A>(p, stream);
    else launch_gemm<Wide, G, F8, F16A>(p, stream);
  };
  const int g = pick(2 * p.inter), d = pick(p.hidden);
  launch(std::true_type{}, g);
  launch(std::false_type{}, d);
  return {g, d};
}

// The shapes. m16 (decode) has a 64-column variant; one warp row (WM = 1) on F8 tiles, so
// each warp dequantizes only its own columns' fragments (with two warp rows both would
// convert the same ones).
// The bf16 tiles read 128 k a stage (256 contiguous bytes of each weight row; vLLM's tuned H200
// configs take 128-256 at these sizes): on an H100, against 64 k, 3 % faster on mixtral and
// deepseek at T = 1 to 128 and as fast on qwen3 (docs/bench-cuda.md, session 27). Three stages
// keep two m16 CTAs on an SM (110 KB each), five the narrow tile's two (100 KB). The k depth and
// stages can be set at build time (bench/cuda/variant_build.sh -DMOEREG_M16_BK=64 ...) to time
// variants against each other on one GPU (bench/cuda/issue20_ab.sh); tile_name below describes
// the defaults.
#ifndef MOEREG_M16_BK
#define MOEREG_M16_BK 128
#endif
#ifndef MOEREG_M16_STAGES
#define MOEREG_M16_STAGES 3
#endif
#ifndef MOEREG_M16_NARROW_BK
#define MOEREG_M16_NARROW_BK 128
#endif
#ifndef MOEREG_M16_NARROW_STAGES
#define MOEREG_M16_NARROW_STAGES 5
#endif
using bf16_m16 = tile_shape<16, 128, MOEREG_M16_BK, 1, 4, MOEREG_M16_STAGES>;
using bf16_m16_narrow = tile_shape<16, 64, MOEREG_M16_NARROW_BK, 1, 2, MOEREG_M16_NARROW_STAGES, 2>;
using bf16_m16_narrowest = tile_shape<16, 32, 128, 1, 1, 6, 4>;
#ifndef MOEREG_M64_BK
#define MOEREG_M64_BK 128
#endif
#ifndef MOEREG_M64_STAGES
#define MOEREG_M64_STAGES 3
#endif
using bf16_m64 = tile_shape<64, 128, MOEREG_M64_BK, 2, 4, MOEREG_M64_STAGES>;
using bf16_m128 = tile_shape<128, 128, 32, 2, 4, 4>;
using f8_m16 = tile_shape<16, 128, 128, 1, 4, 5, 2>;
using f8_m16_narrow = tile_shape<16, 64, 128, 1, 2, 6, 4>;
using f8_m64 = tile_shape<64, 128, 64, 1, 4, 4>;
using f8_m128 = tile_shape<128, 128, 32, 2, 4, 4>;

}  // namespace

int tile_rows(tile_config c) { return c == tile_config::m16 ? 16 : c == tile_config::m64 ? 64 : 128; }
namespace {
int f8_tile_k(tile_config c) { return c == tile_config::m16 ? 128 : c == tile_config::m64 ? 64 : 32; }
}  // namespace
bool f8_exact_products(int scale_b1, int hidden, int inter, tile_config c) {
  return scale_b1 % f8_tile_k(c) == 0 || scale_b1 >= (hidden > inter ? hidden : inter);
}
const char* tile_name(tile_config c, bool f8, bool exact) {
  if (f8 && exact)
    return c == tile_config::m16
               ? "n128 m16 k128 (8 warps: 4 x 2 k groups, 5 stages; n64 with 2 x 4 where that fills more SMs; e4m3 -> f16 "
                 "mma, block scales in the accumulation)"
           : c == tile_config::m64 ? "n128 m64 k64 (4 warps, 4 stages; e4m3 -> f16 mma, block scales in the accumulation)"
                                   : "n128 m128 k32 (8 warps, 4 stages; e4m3 -> f16 mma, block scales in the accumulation)";
  if (f8)
    return c == tile_config::m16 ? "n128 m16 k128 (8 warps: 4 x 2 k groups, 5 stages; n64 with 2 x 4 where that fills "
                                   "more SMs; e4m3 in shared memory)"
           : c == tile_config::m64 ? "n128 m64 k64 (4 warps, 4 stages, e4m3 in shared memory)"
                                   : "n128 m128 k32 (8 warps, 4 stages, e4m3 in shared memory)";
  return c == tile_config::m16 ? "n128 m16 k128 (4 warps, 3 stages; n64 with 2 x 2 k groups, 5 stages, where that fills more SMs)"
         : c == tile_config::m64 ? "n128 m64 k128 (8 warps, 3 stages)"
                                 : "n128 m128 k32 (8 warps, 4 stages)";
}
int max_row_tiles(int slots, int experts, int bm) {
  long long bound = (static_cast<long long>(slots) + bm - 1) / bm + (experts < slots ? experts : slots);
  if (bound > slots) bound = slots;
  return static_cast<int>(bound < 1 ? 1 : bound);
}

launch_shape launch_experts(const gemm_problem& p, tile_config c, cudaStream_t stream) {
  if (p.hidden % 8 != 0 || p.inter % 8 != 0)
    throw std::runtime_error("CUDA experts need hidden and intermediate sizes that are multiples of 8");
  if (p.w13_f8) {
    if (p.hidden % 16 != 0 || p.inter % 16 != 0)
      throw std::runtime_error("CUDA F8_E4M3 experts need hidden and intermediate sizes that are multiples of 16");
    if (f8_exact_products(p.scale_b1, p.hidden, p.inter, c)) {
      if (!p.x_amax || !p.h_amax) throw std::runtime_error("CUDA F8 experts: the row magnitudes were not given");
      switch (c) {
        case tile_config::m16: return run_experts<f8_m16, f8_m16_narrow, f8_m16_narrow, true, true>(p, stream);
        case tile_config::m64: return run_experts<f8_m64, f8_m64, f8_m64, true, true>(p, stream);
        case tile_config::m128: return run_experts<f8_m128, f8_m128, f8_m128, true, true>(p, stream);
      }
    }
    switch (c) {
      case tile_config::m16: return run_experts<f8_m16, f8_m16_narrow, f8_m16_narrow, true>(p, stream);
      case tile_config::m64: return run_experts<f8_m64, f8_m64, f8_m64, true>(p, stream);
      case tile_config::m128: return run_experts<f8_m128, f8_m128, f8_m128, true>(p, stream);
    }
  }
  switch (c) {
    case tile_config::m16: return run_experts<bf16_m16, bf16_m16_narrow, bf16_m16_narrowest, false>(p, stream);
    case tile_config::m64: return run_experts<bf16_m64, bf16_m64, bf16_m64, false>(p, stream);
    case tile_config::m128: return run_experts<bf16_m128, bf16_m128, bf16_m128, false>(p, stream);
  }
  throw std::runtime_error("launch_experts: unknown tile shape");
}

}  // namespace moereg::cuda
