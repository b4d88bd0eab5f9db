// SPDX-License-Identifier: Apache-2.0
// AVX-512 tiles. f32 FMA for every dtype pair; with AVX-512 BF16, bf16 x bf16 tiles use
// vdpbf16ps (32 products per instruction, f32 accumulation). Compiled with AVX-512 flags.
// GCC 12 warns inside its own _mm512_cvtepu16_epi32 (an intentionally undefined source).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu_tile_impl.h"

namespace moereg::cpu {
namespace {

struct avx512_vec {
  using reg = __m512;
  static constexpr int W = 16;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg set1(float v) { return _mm512_set1_ps(v); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  // As the AVX2 version, on 16 bytes: e4m3fn s.eeee.mmm as the f16 s.0eeee.mmm0000000
  // (the value times 2^-8, subnormals exact), 0x7F/0xFF made f16 NaN.
  static reg load_fp8(const std::uint8_t* p) {
    __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    __m256i low = _mm256_and_si256(x, _mm256_set1_epi16(0x7F));
    __m256i h = _mm256_or_si256(_mm256_slli_epi16(low, 7), _mm256_slli_epi16(_mm256_and_si256(x, _mm256_set1_epi16(0x80)), 8));
    h = _mm256_or_si256(h, _mm256_and_si256(_mm256_cmpeq_epi16(low, _mm256_set1_epi16(0x7F)), _mm256_set1_epi16(0x7C00)));
    return _mm512_cvtph_ps(h);
  }
  static reg load(const std::uint16_t* p) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static reg fma(reg a, reg b, reg acc) { return _mm512_fmadd_ps(a, b, acc); }
  static float sum(reg r) { return _mm512_reduce_add_ps(r); }
};

// bf16 x bf16: each vdpbf16ps multiplies 32 bf16 pairs and adds adjacent products into
// 16 f32 lanes. The K tail is a masked load (zeros contribute nothing).
template <int M, int N>
void tile_dpbf16(const void* const* a_, const void* const* b_, std::int64_t k_len, float* c) {
  const std::uint16_t* a[M];
  const std::uint16_t* b[N];
  for (int m = 0; m < M; ++m) a[m] = static_cast<const std::uint16_t*>(a_[m]);
  for (int n = 0; n < N; ++n) b[n] = static_cast<const std::uint16_t*>(b_[n]);
  __m512 acc[M][N];
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) acc[m][n] = _mm512_setzero_ps();
  std::int64_t k = 0;
  for (; k + 32 <= k_len; k += 32) {
    __m512bh av[M];
    for (int m = 0; m < M; ++m) av[m] = (__m512bh)_mm512_loadu_si512(a[m] + k);
    for (int n = 0; n < N; ++n) {
      __m512bh bv = (__m512bh)_mm512_loadu_si512(b[n] + k);
      for (int m = 0; m < M; ++m) acc[m][n] = _mm512_dpbf16_ps(acc[m][n], av[m], bv);
    }
  }
  if (k < k_len) {
    __mmask32 mask = static_cast<__mmask32>((1ull << (k_len - k)) - 1);
    __m512bh av[M];
    for (int m = 0; m < M; ++m) av[m] = (__m512bh)_mm512_maskz_loadu_epi16(mask, a[m] + k);
    for (int n = 0; n < N; ++n) {
      __m512bh bv = (__m512bh)_mm512_maskz_loadu_epi16(mask, b[n] + k);
      for (int m = 0; m < M; ++m) acc[m][n] = _mm512_dpbf16_ps(acc[m][n], av[m], bv);
    }
  }
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) c[m * N + n] = _mm512_reduce_add_ps(acc[m][n]);
}

template <int M, int N>
struct dp_tile {
  static void run(const void* const* a, const void* const* b, std::int64_t k, float* c) { tile_dpbf16<M, N>(a, b, k, c); }
};

// 4-bit codes, 16 at a time: the group's 16 scaled code values fill one register, which
// vpermps indexes with the codes directly.
template <const float* Codes>
void widen_nibbles_avx512(const void* row, std::int64_t k0, std::int64_t n, const float* scale_row, std::int64_t scale_cols,
                          float* dst) {
  const std::uint8_t* p = static_cast<const std::uint8_t*>(row);
  const std::int64_t end = k0 + n;
  const __m512i shifts = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28), low4 = _mm512_set1_epi32(15);
  std::int64_t k = k0;
  float tab[16];
  while (k < end) {
    const std::int64_t group = k / scale_cols;
    const std::int64_t seg_end = (group + 1) * scale_cols < end ? (group + 1) * scale_cols : end;
    const float s = scale_row[group];
    for (int q = 0; q < 16; ++q) tab[q] = Codes[q] * s;
    const __m512 tv = _mm512_loadu_ps(tab);
    for (; k < seg_end && (k & 1); ++k) dst[k - k0] = tab[(p[k >> 1] >> 4) & 15];
    for (; k + 16 <= seg_end; k += 16) {
      std::uint32_t w[2];
      __builtin_memcpy(w, p + (k >> 1), 8);
      const __m512i words = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(static_cast<int>(w[0]))),
                                               _mm256_set1_epi32(static_cast<int>(w[1])), 1);
      const __m512i idx = _mm512_and_si512(_mm512_srlv_epi32(words, shifts), low4);
      _mm512_storeu_ps(dst + (k - k0), _mm512_permutexvar_ps(idx, tv));
    }
    for (; k < seg_end; ++k) dst[k - k0] = tab[(p[k >> 1] >> (4 * (k & 1))) & 15];
  }
}

void widen_int8_avx512(const void* row, std::int64_t k0, std::int64_t n, const float* scale_row, std::int64_t scale_cols,
                       float* dst) {
  const std::int8_t* p = static_cast<const std::int8_t*>(row);
  const std::int64_t end = k0 + n;
  std::int64_t k = k0;
  while (k < end) {
    const std::int64_t group = k / scale_cols;
    const std::int64_t seg_end = (group + 1) * scale_cols < end ? (group + 1) * scale_cols : end;
    const float s = scale_row[group];
    const __m512 sv = _mm512_set1_ps(s);
    for (; k + 16 <= seg_end; k += 16) {
      const __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k)));
      _mm512_storeu_ps(dst + (k - k0), _mm512_mul_ps(_mm512_cvtepi32_ps(q), sv));
    }
    for (; k < seg_end; ++k) dst[k - k0] = static_cast<float>(p[k]) * s;
  }
}

}  // namespace

void fill_avx512(kernel_table& t) {
  t.isa = "avx512f";
  t.tile_m = 4;  // 4 x 6 accumulators + 4 A rows + 1 B row of the 32 zmm registers
  t.tile_n = 6;
  fma_tiles<avx512_vec>::fill(t);
  t.widen[elem_int4] = &widen_nibbles_avx512<int4_codes>;
  t.widen[elem_mxfp4] = &widen_nibbles_avx512<e2m1_codes>;
  t.widen[elem_int8] = &widen_int8_avx512;
  t.panel_min_rows = 0;  // bf16 weights stay on the direct tiles (the panel path is not measured on AVX-512)
  t.panel_tile_m = 4;
  t.panel_tile_n = 6;
}

void fill_avx512bf16(kernel_table& t) {
  fill_avx512(t);
  t.isa = "avx512bf16";
  fill_tiles<dp_tile>(t.tiles[elem_bf16][elem_bf16]);
}

}  // namespace moereg::cpu
