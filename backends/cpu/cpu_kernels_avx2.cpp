// AVX2 + FMA tiles: bf16 widened to f32 by shifting, f32 FMA. Compiled with -mavx2 -mfma.
#include <immintrin.h>

#include "cpu_tile_impl.h"

namespace moereg::cpu {
namespace {

struct avx2_vec {
  using reg = __m256;
  static constexpr int W = 8;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
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

}  // namespace

void fill_avx2(kernel_table& t) {
  t.isa = "avx2";
  t.tile_m = 2;  // 2 x 4 accumulators + operands fit the 16 ymm registers
  t.tile_n = 4;
  fma_tiles<avx2_vec>::fill(t);
}

}  // namespace moereg::cpu
