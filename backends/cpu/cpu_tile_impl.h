// SPDX-License-Identifier: Apache-2.0
// cpu_tile_impl.h - the dot-product tile written once over a vector type V, instantiated
// by each kernel translation unit with its own ISA. No STL: see cpu_kernels.h.
//
// V provides: reg, W (lanes), zero(), set1(float), load(const float*), load(const std::uint16_t*),
// load_fp8(const std::uint8_t*) (W e4m3fn bytes as value x 2^-8, NaN kept), store(float*, reg),
// mul(a, b), fma(a, b, acc), sum(reg). bf16 is widened to f32 by a 16-bit shift (exact).
#pragma once

#include <cstdint>

#include "cpu_kernels.h"

namespace moereg::cpu {

template <class V, class T>
inline typename V::reg load_tail(const T* p, std::int64_t n) {
  T buf[V::W] = {};
  for (std::int64_t i = 0; i < n; ++i) buf[i] = p[i];
  return V::load(buf);
}

template <class V, class TA, class TB, int M, int N>
void tile_fma(const void* const* a_, const void* const* b_, std::int64_t k_len, float* c) {
  const TA* a[M];
  const TB* b[N];
  for (int m = 0; m < M; ++m) a[m] = static_cast<const TA*>(a_[m]);
  for (int n = 0; n < N; ++n) b[n] = static_cast<const TB*>(b_[n]);
  typename V::reg acc[M][N];
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) acc[m][n] = V::zero();
  std::int64_t k = 0;
  for (; k + V::W <= k_len; k += V::W) {
    typename V::reg av[M];
    for (int m = 0; m < M; ++m) av[m] = V::load(a[m] + k);
    for (int n = 0; n < N; ++n) {
      typename V::reg bv = V::load(b[n] + k);
      for (int m = 0; m < M; ++m) acc[m][n] = V::fma(av[m], bv, acc[m][n]);
    }
  }
  if (k < k_len) {
    typename V::reg av[M];
    for (int m = 0; m < M; ++m) av[m] = load_tail<V>(a[m] + k, k_len - k);
    for (int n = 0; n < N; ++n) {
      typename V::reg bv = load_tail<V>(b[n] + k, k_len - k);
      for (int m = 0; m < M; ++m) acc[m][n] = V::fma(av[m], bv, acc[m][n]);
    }
  }
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) c[m * N + n] = V::sum(acc[m][n]);
}

// The exact value of an e4m3fn byte (no STL here: bits assembled by hand).
inline float fp8_e4m3_exact(std::uint8_t v) {
  const std::uint32_t e = (v >> 3) & 15u, m = v & 7u;
  float mag;
  if (e == 15 && m == 7) {
    mag = __builtin_nanf("");
  } else if (e == 0) {
    mag = static_cast<float>(m) * (1.0f / 512.0f);  // subnormal: m/8 * 2^-6
  } else {
    std::uint32_t bits = ((e + 120u) << 23) | (m << 20);  // (1 + m/8) * 2^(e - 7)
    __builtin_memcpy(&mag, &bits, 4);
  }
  return (v & 0x80) ? -mag : mag;
}

inline float bf16_exact(std::uint16_t v) {
  std::uint32_t bits = static_cast<std::uint32_t>(v) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

template <class V>
void widen_bf16(const void* row, std::int64_t k0, std::int64_t n, const float*, std::int64_t, float* dst) {
  const std::uint16_t* p = static_cast<const std::uint16_t*>(row) + k0;
  std::int64_t i = 0;
  for (; i + V::W <= n; i += V::W) V::store(dst + i, V::load(p + i));
  for (; i < n; ++i) dst[i] = bf16_exact(p[i]);
}

// FP8 row segment times its block scales, one scale block at a time. The vector path
// computes (q x 2^-8) x (s x 2^8): both factors exact powers-of-two shifts of q and s, so
// the result is q x s rounded once, as the scalar path; a scale so large that s x 2^8
// overflows takes the scalar path.
template <class V>
void widen_fp8(const void* row, std::int64_t k0, std::int64_t n, const float* scale_row, std::int64_t scale_cols,
               float* dst) {
  const std::uint8_t* p = static_cast<const std::uint8_t*>(row);
  const std::int64_t end = k0 + n;
  std::int64_t k = k0;
  while (k < end) {
    const std::int64_t block = k / scale_cols;
    const std::int64_t seg_end = (block + 1) * scale_cols < end ? (block + 1) * scale_cols : end;
    const float s = scale_row[block];
    const float s256 = s * 256.0f;
    if (s256 - s256 == 0.0f) {  // finite
      const typename V::reg sv = V::set1(s256);
      for (; k + V::W <= seg_end; k += V::W) V::store(dst + (k - k0), V::mul(V::load_fp8(p + k), sv));
    }
    for (; k < seg_end; ++k) dst[k - k0] = fp8_e4m3_exact(p[k]) * s;
  }
}

// The values of the 4-bit codes before scaling: symmetric int4 (q - 8) and MXFP4's e2m1.
inline constexpr float int4_codes[16] = {-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7};
inline constexpr float e2m1_codes[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};

// A 4-bit row segment times its group scales: per group the 16 code values are scaled once
// (each product rounded once, as q x s), then every element is one table lookup.
template <class V, const float* Codes>
void widen_nibbles(const void* row, std::int64_t k0, std::int64_t n, const float* scale_row, std::int64_t scale_cols,
                   float* dst) {
  const std::uint8_t* p = static_cast<const std::uint8_t*>(row);
  const std::int64_t end = k0 + n;
  std::int64_t k = k0;
  float tab[16];
  while (k < end) {
    const std::int64_t group = k / scale_cols;
    const std::int64_t seg_end = (group + 1) * scale_cols < end ? (group + 1) * scale_cols : end;
    const float s = scale_row[group];
    for (int q = 0; q < 16; ++q) tab[q] = Codes[q] * s;
    if (k & 1) {
      dst[k - k0] = tab[p[k >> 1] >> 4];
      ++k;
    }
    float* d = dst + (k - k0);
    const std::uint8_t* b = p + (k >> 1);
    const std::int64_t pairs = (seg_end - k) >> 1;
    for (std::int64_t j = 0; j < pairs; ++j) {
      d[2 * j] = tab[b[j] & 15];
      d[2 * j + 1] = tab[b[j] >> 4];
    }
    k += 2 * pairs;
    if (k < seg_end) {
      dst[k - k0] = tab[p[k >> 1] & 15];
      ++k;
    }
  }
}

// An int8 row segment times its group scales.
template <class V>
void widen_int8(const void* row, std::int64_t k0, std::int64_t n, const float* scale_row, std::int64_t scale_cols, float* dst) {
  const std::int8_t* p = static_cast<const std::int8_t*>(row);
  const std::int64_t end = k0 + n;
  std::int64_t k = k0;
  while (k < end) {
    const std::int64_t group = k / scale_cols;
    const std::int64_t seg_end = (group + 1) * scale_cols < end ? (group + 1) * scale_cols : end;
    const float s = scale_row[group];
    for (; k < seg_end; ++k) dst[k - k0] = static_cast<float>(p[k]) * s;
  }
}

template <template <int, int> class Tile, int M = 1, int N = 1>
void fill_tiles(tile_fn (&t)[max_tile_m][max_tile_n]) {
  t[M - 1][N - 1] = &Tile<M, N>::run;
  if constexpr (N < max_tile_n) {
    fill_tiles<Tile, M, N + 1>(t);
  } else if constexpr (M < max_tile_m) {
    fill_tiles<Tile, M + 1, 1>(t);
  }
}

template <class V>
struct fma_tiles {
  template <int M, int N> struct ff { static void run(const void* const* a, const void* const* b, std::int64_t k, float* c) { tile_fma<V, float, float, M, N>(a, b, k, c); } };
  template <int M, int N> struct fb { static void run(const void* const* a, const void* const* b, std::int64_t k, float* c) { tile_fma<V, float, std::uint16_t, M, N>(a, b, k, c); } };
  template <int M, int N> struct bf { static void run(const void* const* a, const void* const* b, std::int64_t k, float* c) { tile_fma<V, std::uint16_t, float, M, N>(a, b, k, c); } };
  template <int M, int N> struct bb { static void run(const void* const* a, const void* const* b, std::int64_t k, float* c) { tile_fma<V, std::uint16_t, std::uint16_t, M, N>(a, b, k, c); } };
  static void fill(kernel_table& t) {
    fill_tiles<ff>(t.tiles[elem_f32][elem_f32]);
    fill_tiles<fb>(t.tiles[elem_f32][elem_bf16]);
    fill_tiles<bf>(t.tiles[elem_bf16][elem_f32]);
    fill_tiles<bb>(t.tiles[elem_bf16][elem_bf16]);
    t.widen[elem_bf16] = &widen_bf16<V>;
    t.widen[elem_fp8] = &widen_fp8<V>;
    t.widen[elem_int4] = &widen_nibbles<V, int4_codes>;
    t.widen[elem_mxfp4] = &widen_nibbles<V, e2m1_codes>;
    t.widen[elem_int8] = &widen_int8<V>;
  }
};

}  // namespace moereg::cpu
