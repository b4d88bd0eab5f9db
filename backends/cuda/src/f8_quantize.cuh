// SPDX-License-Identifier: Apache-2.0
// f8_quantize.cuh - activations to e4m3 per 128 columns, as DeepSeek-V3's FP8 recipe quantizes
// them (scale = the group's largest magnitude / 448), written in the fragment order the F8
// weights were uploaded in (host::stage_f8_fragments) so every product pairs the same k. Used
// by both FP8 tensor-core paths (fp8_experts.cu, fp8_grouped_experts.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "warp_reduce.cuh"

namespace moereg::cuda {

constexpr float e4m3_max = 448.f;

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

}  // namespace moereg::cuda
