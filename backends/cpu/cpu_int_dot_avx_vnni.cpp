// SPDX-License-Identifier: Apache-2.0
// Integer tiles on AVX2 with AVX-VNNI (Alder Lake and later, Sapphire Rapids): vpdpbusd on
// 256 bits, unsigned weight bytes times signed activations, four products into each int32
// lane without saturation. int8 weights have their sign bit flipped (w + 128: bias 128),
// int4 codes are q + 8 (bias 8). Compiled with -mavx2 -mfma -mavxvnni; runs only where
// cpu_has_avx_vnni() said yes.
#include "cpu_int_dot_avx2_impl.h"

namespace moereg::cpu {
namespace {

struct vnni256_product {
  static constexpr int int8_bias = 128;
  static __m256i u8(__m256i acc, __m256i u, __m256i a) { return _mm256_dpbusd_avx_epi32(acc, u, a); }
  static __m256i int8(__m256i acc, __m256i w, __m256i a) {
    return u8(acc, _mm256_xor_si256(w, _mm256_set1_epi8(static_cast<char>(0x80))), a);
  }
};

}  // namespace

void fill_int_avx_vnni(int_kernels& k) {
  k.isa = "avx_vnni";
  k.quantize = &int_quantize_avx2;
  k.tile_m = 2;
  k.tile_n = 4;
  fill_avx2_int_tiles<vnni256_product, false>(k);
  fill_avx2_int_tiles<vnni256_product, true>(k);
}

}  // namespace moereg::cpu
