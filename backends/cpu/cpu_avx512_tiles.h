// SPDX-License-Identifier: Apache-2.0
// cpu_avx512_tiles.h - the AVX-512 pieces both AMX units' epilogues use on 16 x 16 f32 tiles:
// e^x, SiLU(g) x u, a 16 x 16 transpose, and the routing-weighted store of a down tile. Only
// the AMX translation units (cpu_kernels_amx.cpp, cpu_int_dot_amx.cpp) include it: only code
// compiled with AVX-512 flags may call it (no STL, see cpu_kernels.h).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace moereg::cpu {
namespace {

// e^x to ~2e-7 relative: x = n ln2 + r, |r| <= ln2 / 2, a degree-6 polynomial in r, times 2^n.
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// SiLU(g) x u = g / (1 + e^-g) x u.
inline __m512 silu_mul16(__m512 g, __m512 u) {
  return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), g)))), u);
}

// 16 x 16 transpose of 32-bit elements: r[i] row i in, r[j] column j out.
inline void transpose16(__m512i* r) {
  __m512i a[16], b[16];
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // b[4i + j], 128-bit lane L: rows 4i..4i+3 of column 4L + j
  for (int i = 0; i < 4; ++i) {
    b[4 * i + 0] = _mm512_unpacklo_epi64(a[4 * i + 0], a[4 * i + 2]);
    b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i + 0], a[4 * i + 2]);
    b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
    b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
  }
  for (int j = 0; j < 4; ++j) {
    __m512i c0 = _mm512_shuffle_i32x4(b[j], b[4 + j], 0x88), c1 = _mm512_shuffle_i32x4(b[j], b[4 + j], 0xDD);
    __m512i d0 = _mm512_shuffle_i32x4(b[8 + j], b[12 + j], 0x88), d1 = _mm512_shuffle_i32x4(b[8 + j], b[12 + j], 0xDD);
    r[j] = _mm512_shuffle_i32x4(c0, d0, 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(c0, d0, 0xDD);
    r[4 + j] = _mm512_shuffle_i32x4(c1, d1, 0x88);
    r[12 + j] = _mm512_shuffle_i32x4(c1, d1, 0xDD);
  }
}

// y[t][m] = w[t] x c[16 m + t] for m < rows, t < tokens: a down tile (row m a weight row,
// column t a token) into the tokens' output rows. Stream: a whole 64-byte line goes out as a
// streaming store (y is read again only by the sum after the down phase, from memory once T is
// large, and a normal store first reads every line it writes; scale_down_tiles fences them).
template <bool Stream>
void tile_scale_out_impl(const float* c, int rows, int tokens, const float* w, float* const* y) {
  __m512i r[16];
  for (int m = 0; m < 16; ++m) r[m] = _mm512_loadu_si512(c + 16 * m);
  transpose16(r);
  const __mmask16 mask = static_cast<__mmask16>((1u << rows) - 1);
  for (int t = 0; t < tokens; ++t) {
    const __m512 v = _mm512_mul_ps(_mm512_set1_ps(w[t]), _mm512_castsi512_ps(r[t]));
    if (Stream && rows == 16 && (reinterpret_cast<std::uintptr_t>(y[t]) & 63) == 0) _mm512_stream_ps(y[t], v);
    else _mm512_mask_storeu_ps(y[t], mask, v);
  }
}
// The unit's scale_out for the option stream_y.
inline auto tile_scale_out(bool stream) { return stream ? &tile_scale_out_impl<true> : &tile_scale_out_impl<false>; }

}  // namespace
}  // namespace moereg::cpu
