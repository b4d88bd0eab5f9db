// SPDX-License-Identifier: Apache-2.0
// The activations' int8 quantization (cpu_int_dot.h's int_quantize_fn) on AVX-512, 16 values a
// register, with the scalar version's results bit for bit: each operation is the scalar one
// lane by lane (see the comments on max, min and the conversion for the operand orders that
// keep NaN handling equal). Compiled with AVX-512 F/BW/VL; runs only where cpu_has_avx512()
// said yes (the avx512vnni integer tiles pick it).
// GCC 12's intrinsics start from self-initialized "undefined" vectors, which -Wuninitialized flags.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu_int_dot.h"

namespace moereg::cpu {
namespace {

inline __mmask16 first_lanes(std::int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
}

// Values [i, i + 16) as f32 (bf16 widened exactly), zeros outside the mask.
inline __m512 load16(const void* src, bool bf16, std::int64_t i, __mmask16 m) {
  if (!bf16) return _mm512_maskz_loadu_ps(m, static_cast<const float*>(src) + i);
  const __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const std::uint16_t*>(src) + i);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// max|x| over [c0, c1). max_ps returns its second operand when either is NaN, so a NaN x
// leaves the running max as std::max(amax, |x|) does; the lanes' max is then exact.
inline float group_amax(const void* src, bool bf16, std::int64_t c0, std::int64_t c1) {
  __m512 m = _mm512_setzero_ps();
  for (std::int64_t i = c0; i < c1; i += 16) m = _mm512_max_ps(_mm512_abs_ps(load16(src, bf16, i, first_lanes(c1 - i))), m);
  return _mm512_reduce_max_ps(m);
}

// Codes of values [i, i + 16) (zeros past k), with their int32 sum added to `sum`.
inline __m128i codes16(const void* src, bool bf16, std::int64_t i, std::int64_t k, __m512 inv, __m512i& sum) {
  const __mmask16 m = i < k ? first_lanes(k - i) : static_cast<__mmask16>(0);
  const __m512 p = _mm512_mul_ps(load16(src, bf16, i, m), inv);
  // Clamped to +-127 with NaN kept (min/max return the second operand, p, when it is NaN):
  // clamping before rounding gives the same integers as after, +-127 being integers.
  const __m512 c = _mm512_max_ps(_mm512_set1_ps(-127.0f), _mm512_min_ps(_mm512_set1_ps(127.0f), p));
  // Rounded by MXCSR (to nearest even, as nearbyint in the default mode). A NaN (0 x an
  // infinite inverse) gives 0: the low byte of cvttss2si's 0x80000000, the scalar cast on x86.
  const __m512i q = _mm512_maskz_cvtps_epi32(_mm512_cmp_ps_mask(c, c, _CMP_ORD_Q), c);
  sum = _mm512_add_epi32(sum, q);
  return _mm512_cvtepi32_epi8(q);
}

}  // namespace

void int_quantize_avx512(const void* src, bool bf16, std::int64_t k, std::int64_t group, bool int4, std::int8_t* q,
                         float* scale, std::int32_t* sum) {
  const std::int64_t chunks = (k + int_chunk - 1) / int_chunk, groups = (k + group - 1) / group;
  for (std::int64_t gi = 0; gi < groups; ++gi) {
    const std::int64_t c0 = gi * group, c1 = c0 + group < k ? c0 + group : k;
    const float amax = group_amax(src, bf16, c0, c1);
    scale[gi] = amax / 127.0f;
    const __m512 inv = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    // Whole chunks, the last one padded with zeros: groups never split a chunk.
    for (std::int64_t c = c0 / int_chunk; c < chunks && c * int_chunk < c1; ++c) {
      const std::int64_t i = c * int_chunk;
      __m512i s = _mm512_setzero_si512();
      const __m128i b0 = codes16(src, bf16, i, k, inv, s), b1 = codes16(src, bf16, i + 16, k, inv, s);
      const __m128i b2 = codes16(src, bf16, i + 32, k, inv, s), b3 = codes16(src, bf16, i + 48, k, inv, s);
      sum[c] = _mm512_reduce_add_epi32(s);
      const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(b1, b0)), _mm256_set_m128i(b3, b2), 1);
      if (!int4) {
        _mm512_storeu_si512(q + i, v);
      } else {
        // Even elements (the low byte of each 16-bit pair) to 0..31, odd ones to 32..63.
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm512_cvtepi16_epi8(v));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i + 32), _mm512_cvtepi16_epi8(_mm512_srli_epi16(v, 8)));
      }
    }
  }
}

}  // namespace moereg::cpu
