// SPDX-License-Identifier: Apache-2.0
// The activations' int8 quantization (cpu_int_dot.h's int_quantize_fn) on AVX2, 8 values a
// register, with the scalar version's results bit for bit: the same operations and operand
// orders as the AVX-512 version (cpu_int_quantize_avx512.cpp says why each keeps NaN handling
// equal). Row tails go through a zeroed 8-value buffer (AVX2 has no masked 16-bit loads).
// Compiled with -mavx2; runs only where cpu_has_avx2() said yes (the avx2 and avx_vnni tiles).
#include <immintrin.h>

#include "cpu_int_dot.h"

namespace moereg::cpu {
namespace {

// Values [i, i + 8) as f32 (bf16 widened exactly), zeros past k.
inline __m256 load8(const void* src, bool bf16, std::int64_t i, std::int64_t k) {
  if (i + 8 <= k) {
    if (!bf16) return _mm256_loadu_ps(static_cast<const float*>(src) + i);
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const std::uint16_t*>(src) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  alignas(32) float v[8] = {};
  for (std::int64_t j = i; j < k; ++j) {
    if (!bf16) {
      v[j - i] = static_cast<const float*>(src)[j];
    } else {
      const std::uint32_t bits = static_cast<std::uint32_t>(static_cast<const std::uint16_t*>(src)[j]) << 16;
      __builtin_memcpy(&v[j - i], &bits, 4);
    }
  }
  return _mm256_load_ps(v);
}

inline float group_amax(const void* src, bool bf16, std::int64_t c0, std::int64_t c1) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 m = _mm256_setzero_ps();
  for (std::int64_t i = c0; i < c1; i += 8) m = _mm256_max_ps(_mm256_and_ps(load8(src, bf16, i, c1), abs_mask), m);
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
  return _mm_cvtss_f32(h);
}

// Codes of values [i, i + 8) (zeros past k) as int32, added to `sum`.
inline __m256i codes8(const void* src, bool bf16, std::int64_t i, std::int64_t k, __m256 inv, __m256i& sum) {
  const __m256 p = _mm256_mul_ps(load8(src, bf16, i, k), inv);
  const __m256 c = _mm256_max_ps(_mm256_set1_ps(-127.0f), _mm256_min_ps(_mm256_set1_ps(127.0f), p));
  const __m256i q = _mm256_and_si256(_mm256_cvtps_epi32(c), _mm256_castps_si256(_mm256_cmp_ps(c, c, _CMP_ORD_Q)));
  sum = _mm256_add_epi32(sum, q);
  return q;
}

// 32 codes [i, i + 32) as bytes in order (values within +-127: the saturating packs are exact).
inline __m256i codes32(const void* src, bool bf16, std::int64_t i, std::int64_t k, __m256 inv, __m256i& sum) {
  const __m256i a = _mm256_packs_epi32(codes8(src, bf16, i, k, inv, sum), codes8(src, bf16, i + 8, k, inv, sum));
  const __m256i b = _mm256_packs_epi32(codes8(src, bf16, i + 16, k, inv, sum), codes8(src, bf16, i + 24, k, inv, sum));
  // The packs interleave 128-bit lanes: 4-byte groups come out as 0, 2, 4, 6, 1, 3, 5, 7.
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// 32 bytes as their 16 even ones (low half) and 16 odd ones (high half).
inline __m256i split_even_odd(__m256i v) {
  const __m256i in_lane = _mm256_shuffle_epi8(
      v, _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
  return _mm256_permute4x64_epi64(in_lane, 0xD8);  // 64-bit quarters 0, 2, 1, 3
}

}  // namespace

void int_quantize_avx2(const void* src, bool bf16, std::int64_t k, std::int64_t group, bool int4, std::int8_t* q,
                       float* scale, std::int32_t* sum) {
  const std::int64_t chunks = (k + int_chunk - 1) / int_chunk, groups = (k + group - 1) / group;
  for (std::int64_t gi = 0; gi < groups; ++gi) {
    const std::int64_t c0 = gi * group, c1 = c0 + group < k ? c0 + group : k;
    const float amax = group_amax(src, bf16, c0, c1);
    scale[gi] = amax / 127.0f;
    const __m256 inv = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    for (std::int64_t c = c0 / int_chunk; c < chunks && c * int_chunk < c1; ++c) {
      const std::int64_t i = c * int_chunk;
      __m256i s = _mm256_setzero_si256();
      __m256i lo = codes32(src, bf16, i, k, inv, s), hi = codes32(src, bf16, i + 32, k, inv, s);
      const __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
      const __m128i s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
      sum[c] = _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1)));
      if (int4) {
        // Even elements of the chunk to 0..31, odd ones to 32..63.
        lo = split_even_odd(lo);
        hi = split_even_odd(hi);
        const __m256i even = _mm256_permute2x128_si256(lo, hi, 0x20), odd = _mm256_permute2x128_si256(lo, hi, 0x31);
        lo = even;
        hi = odd;
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), lo);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i + 32), hi);
    }
  }
}

}  // namespace moereg::cpu
