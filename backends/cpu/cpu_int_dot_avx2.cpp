// SPDX-License-Identifier: Apache-2.0
// Integer tiles on AVX2 without VNNI: vpmaddubsw multiplies unsigned by signed bytes into
// saturating int16 pairs, vpmaddwd sums those into int32. int8 weights take the sign trick
// (|w| times a with w's sign), so no pair exceeds 2 x 127 x 127 < 2^15; int4 codes (q + 8 <= 15)
// are unsigned already. Compiled with -mavx2 -mfma; runs only where cpu_has_avx2() said yes.
#include "cpu_int_dot_avx2_impl.h"

namespace moereg::cpu {
namespace {

struct maddubs_product {
  static constexpr int int8_bias = 0;
  static __m256i u8(__m256i acc, __m256i u, __m256i a) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1)));
  }
  static __m256i int8(__m256i acc, __m256i w, __m256i a) { return u8(acc, _mm256_abs_epi8(w), _mm256_sign_epi8(a, w)); }
};

}  // namespace

void fill_int_avx2(int_kernels& k) {
  k.isa = "avx2";
  k.quantize = &int_quantize_avx2;
  k.tile_m = 2;  // 2 x 4 int32 sums, 4 activation and 2 weight registers of the 16
  k.tile_n = 4;
  fill_avx2_int_tiles<maddubs_product, false>(k);
  fill_avx2_int_tiles<maddubs_product, true>(k);
}

}  // namespace moereg::cpu
