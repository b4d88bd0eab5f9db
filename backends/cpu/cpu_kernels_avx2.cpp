// SPDX-License-Identifier: Apache-2.0
// AVX2 + FMA tiles: bf16 widened to f32 by shifting, f32 FMA; FP8 widened through F16C.
// Compiled with -mavx2 -mfma -mf16c.
#include <immintrin.h>

#include "cpu_tile_impl.h"

namespace moereg::cpu {
namespace {

struct avx2_vec {
  using reg = __m256;
  static constexpr int W = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg set1(float v) { return _mm256_set1_ps(v); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  // e4m3fn s.eeee.mmm placed as the f16 s.0eeee.mmm0000000: the same value times 2^-8,
  // subnormals included (vcvtph2ps widens f16 subnormals exactly); 0x7F/0xFF made f16 NaN.
  static reg load_fp8(const std::uint8_t* p) {
    __m128i x = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    __m128i low = _mm_and_si128(x, _mm_set1_epi16(0x7F));
    __m128i h = _mm_or_si128(_mm_slli_epi16(low, 7), _mm_slli_epi16(_mm_and_si128(x, _mm_set1_epi16(0x80)), 8));
    h = _mm_or_si128(h, _mm_and_si128(_mm_cmpeq_epi16(low, _mm_set1_epi16(0x7F)), _mm_set1_epi16(0x7C00)));
    return _mm256_cvtph_ps(h);
  }
  static reg load(const std::uint16_t* p) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static reg fma(reg a, reg b, reg acc) { return _mm256_fmadd_ps(a, b, acc); }
  static float sum(reg r) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

// 4-bit codes, 8 at a time: the group's 16 scaled code values live in two registers; each
// code picks its value with vpermps from both and a blend on its bit 3.
template <const float* Codes>
void widen_nibbles_avx2(const void* row, std::int64_t k0, std::int64_t n, const float* scale_row, std::int64_t scale_cols,
                        float* dst) {
  const std::uint8_t* p = static_cast<const std::uint8_t*>(row);
  const std::int64_t end = k0 + n;
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), low4 = _mm256_set1_epi32(15);
  std::int64_t k = k0;
  float tab[16];
  while (k < end) {
    const std::int64_t group = k / scale_cols;
    const std::int64_t seg_end = (group + 1) * scale_cols < end ? (group + 1) * scale_cols : end;
    const float s = scale_row[group];
    for (int q = 0; q < 16; ++q) tab[q] = Codes[q] * s;
    const __m256 lo = _mm256_loadu_ps(tab), hi = _mm256_loadu_ps(tab + 8);
    for (; k < seg_end && (k & 1); ++k) dst[k - k0] = tab[(p[k >> 1] >> 4) & 15];
    for (; k + 8 <= seg_end; k += 8) {
      std::uint32_t w;
      __builtin_memcpy(&w, p + (k >> 1), 4);
      const __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(w)), shifts), low4);
      const __m256 pick = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));  // bit 3 as the sign
      _mm256_storeu_ps(dst + (k - k0),
                       _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx), pick));
    }
    for (; k < seg_end; ++k) dst[k - k0] = tab[(p[k >> 1] >> (4 * (k & 1))) & 15];
  }
}

void widen_int8_avx2(const void* row, std::int64_t k0, std::int64_t n, const float* scale_row, std::int64_t scale_cols,
                     float* dst) {
  const std::int8_t* p = static_cast<const std::int8_t*>(row);
  const std::int64_t end = k0 + n;
  std::int64_t k = k0;
  while (k < end) {
    const std::int64_t group = k / scale_cols;
    const std::int64_t seg_end = (group + 1) * scale_cols < end ? (group + 1) * scale_cols : end;
    const float s = scale_row[group];
    const __m256 sv = _mm256_set1_ps(s);
    for (; k + 8 <= seg_end; k += 8) {
      const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + k)));
      _mm256_storeu_ps(dst + (k - k0), _mm256_mul_ps(_mm256_cvtepi32_ps(q), sv));
    }
    for (; k < seg_end; ++k) dst[k - k0] = static_cast<float>(p[k]) * s;
  }
}

}  // namespace

void fill_avx2(kernel_table& t) {
  t.isa = "avx2";
  // Measured per core on Zen 2 (64 rows x 1024, one thread): widening bf16 inside the tile
  // costs as much as the FMAs (bf16 x bf16 2 x 4: 44 GFLOP/s). With activations widened to
  // f32 once per item, an f32 x bf16 tile of 4 x 3 (12 accumulators; A read from memory
  // by the FMAs) reaches 79, f32 x f32 on widened FP8 panels 3 x 4 82, of a ~90 peak.
  t.tile_m = 4;
  t.tile_n = 3;
  t.widen_activations = true;
  fma_tiles<avx2_vec>::fill(t);
  t.widen[elem_int4] = &widen_nibbles_avx2<int4_codes>;
  t.widen[elem_mxfp4] = &widen_nibbles_avx2<e2m1_codes>;
  t.widen[elem_int8] = &widen_int8_avx2;
  t.panel_min_rows = 0;  // bf16 weights: converting them in the tile is cheaper than a panel
  t.panel_tile_m = 3;
  t.panel_tile_n = 4;
}

}  // namespace moereg::cpu
