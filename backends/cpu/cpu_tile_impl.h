// cpu_tile_impl.h - the dot-product tile written once over a vector type V, instantiated
// by each kernel translation unit with its own ISA. No STL: see cpu_kernels.h.
//
// V provides: reg, W (lanes), zero(), load(const float*), load(const std::uint16_t*),
// fma(a, b, acc), sum(reg). bf16 is widened to f32 by a 16-bit shift (exact).
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
  }
};

}  // namespace moereg::cpu
