// SPDX-License-Identifier: Apache-2.0
// f8_quantize.cuh - activations to e4m3 per 128 columns, as DeepSeek-V3's FP8 recipe quantizes
// them (scale = the group's largest magnitude / 448), written in the fragment order the F8
// weights were uploaded in (host::stage_f8_fragments) so every product pairs the same k. Used
// by both FP8 tensor-core paths (fp8_experts.cu, fp8_grouped_experts.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <string>

#include "warp_reduce.cuh"

namespace moereg::cuda {

constexpr int f8_group = 128;  // columns per activation scale, rows and columns per weight scale
constexpr float e4m3_max = 448.f;

// Why experts of these sizes and scale blocks do not fit an FP8 tensor-core engine ("" when
// they do): both take 128 x 128 blocks and H, I multiples of 128 (whole blocks; gate and up
// grids that join into the fused [2I, H] matrix's). `engine` names it in the message.
inline std::string f8_block_misfit(long long hidden, long long inter, long long b0, long long b1, const char* engine) {
  if (b0 != f8_group || b1 != f8_group)
    return "scale blocks {" + std::to_string(b0) + ", " + std::to_string(b1) + "}, " + engine + " takes {128, 128}";
  if (hidden % f8_group || inter % f8_group)
    return "hidden " + std::to_string(hidden) + " and intermediate " + std::to_string(inter) +
           " must be multiples of 128 (whole scale blocks)";
  return "";
}

// The natural column (0..127) of value j (0..3) that lane `lane` holds of a 128-column group:
// 16 (l / 4) + {2t, 2t + 1, 8 + 2t, 9 + 2t} (t = l % 4).
__device__ __forceinline__ int natural_col(int lane, int j) {
  return 16 * (lane >> 2) + 2 * (lane & 3) + (j & 1) + (j >> 1) * 8;
}

// One 128-column group of a row by one warp: lane l's four values (natural_col(l, 0..3)) go
// to the 4 bytes at 16 (l / 4) + 4t of dst, the fragment order; lane 0 stores the group's
// scale (amax / 448; 1 for an all-zero or non-finite group).
__device__ __forceinline__ void quantize_group(const float (&v)[4], uint8_t* dst, float* scale, int lane) {
  float m = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
  m = warp_max(m);
  const float s = m > 0.f && isfinite(m) ? m / e4m3_max : 1.f;
  const float inv = 1.f / s;
  const uint32_t lo = __nv_cvt_float2_to_fp8x2(make_float2(v[0] * inv, v[1] * inv), __NV_SATFINITE, __NV_E4M3);
  const uint32_t hi = __nv_cvt_float2_to_fp8x2(make_float2(v[2] * inv, v[3] * inv), __NV_SATFINITE, __NV_E4M3);
  *reinterpret_cast<uint32_t*>(dst + 16 * (lane >> 2) + 4 * (lane & 3)) = lo | (hi << 16);
  if (lane == 0) *scale = s;
}

// quantize_group on 128 bf16 values (src: the group's first), as lane `lane` of the warp holds them.
__device__ __forceinline__ void quantize_bf16_group(const __nv_bfloat16* src, uint8_t* dst, float* scale, int lane) {
  const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src + natural_col(lane, 0)));
  const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src + natural_col(lane, 2)));
  const float v[4] = {a.x, a.y, b.x, b.y};
  quantize_group(v, dst, scale, lane);
}

}  // namespace moereg::cuda
