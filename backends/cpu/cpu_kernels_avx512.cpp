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

}  // namespace

void fill_avx512(kernel_table& t) {
  t.isa = "avx512f";
  t.tile_m = 4;  // 4 x 6 accumulators + 4 A rows + 1 B row of the 32 zmm registers
  t.tile_n = 6;
  fma_tiles<avx512_vec>::fill(t);
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
