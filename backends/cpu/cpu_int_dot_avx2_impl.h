// SPDX-License-Identifier: Apache-2.0
// cpu_int_dot_avx2_impl.h - the integer tiles on 256-bit registers, written once over a
// product policy P and instantiated by cpu_int_dot_avx2.cpp (vpmaddubsw + vpmaddwd) and
// cpu_int_dot_avx_vnni.cpp (vpdpbusd), each with its own ISA flags. No STL (cpu_int_dot.h).
//
// P provides: int8_bias (what the int8 product adds per activation code), int8(acc, w, a)
// for the raw signed int8 weights w, u8(acc, u, a) for unsigned codes u < 16 (int4: q + 8,
// bias 8). A 64-chunk is two registers: int8 weights 32 + 32 bytes; int4 the chunk's 32
// code bytes, low nibbles (even k: activation positions 0..31), then high nibbles (32..63).
// With 16 registers only the int32 sums stay in them; each group part ends in a horizontal
// sum per output, exact in int32, then one scaling.
#pragma once

#include <immintrin.h>

#include "cpu_int_dot.h"

namespace moereg::cpu {
namespace {

// 32 bytes from p, zeros past `bytes` (< 32 only at the end of a row: never read past it).
inline __m256i load_bytes(const void* p, std::int64_t bytes) {
  if (bytes >= 32) return _mm256_loadu_si256(static_cast<const __m256i*>(p));
  alignas(32) unsigned char buf[32] = {};
  if (bytes > 0) __builtin_memcpy(buf, p, static_cast<unsigned long>(bytes));
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(buf));
}

inline std::int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

template <class P, bool Int4, int M, int N>
void avx2_int_tile(const int_rows& r, float* c) {
  constexpr int bias = Int4 ? 8 : P::int8_bias;
  const std::int64_t end = r.k0 + r.k_len < r.k ? r.k0 + r.k_len : r.k;
  for (int i = 0; i < M * N; ++i) c[i] = 0.0f;
  const __m256i low4 = _mm256_set1_epi8(15);
  std::int64_t chunk = r.k0 / int_chunk;
  while (chunk * int_chunk < end) {
    const std::int64_t g = chunk * int_chunk / r.group;
    std::int64_t stop = (g + 1) * r.group;
    if (stop > end) stop = end;
    if (stop > (chunk + int_flush_chunks) * int_chunk) stop = (chunk + int_flush_chunks) * int_chunk;
    __m256i acc[M][N];
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) acc[m][n] = _mm256_setzero_si256();
    std::int32_t asum[M] = {};
    for (; chunk * int_chunk < stop; ++chunk) {
      const std::int64_t k = chunk * int_chunk, valid = end - k < int_chunk ? end - k : int_chunk;
      for (int m = 0; m < M; ++m) asum[m] += r.a_sum[m][chunk];
      __m256i a0[M], a1[M];
      for (int m = 0; m < M; ++m) {
        a0[m] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r.a[m] + k));
        a1[m] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r.a[m] + k + 32));
      }
      for (int n = 0; n < N; ++n) {
        __m256i w0, w1;
        if constexpr (Int4) {
          const __m256i b = load_bytes(static_cast<const std::uint8_t*>(r.b[n]) + k / 2, (valid + 1) / 2);
          w0 = _mm256_and_si256(b, low4);
          w1 = _mm256_and_si256(_mm256_srli_epi16(b, 4), low4);
        } else {
          const std::int8_t* p = static_cast<const std::int8_t*>(r.b[n]) + k;
          w0 = load_bytes(p, valid);
          w1 = load_bytes(p + 32, valid - 32);
        }
        for (int m = 0; m < M; ++m) {
          if constexpr (Int4) {
            acc[m][n] = P::u8(P::u8(acc[m][n], w0, a0[m]), w1, a1[m]);
          } else {
            acc[m][n] = P::int8(P::int8(acc[m][n], w0, a0[m]), w1, a1[m]);
          }
        }
      }
    }
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n)
        c[m * N + n] += static_cast<float>(hsum_epi32(acc[m][n]) - bias * asum[m]) * (r.b_scale[n][g] * r.a_scale[m][g]);
  }
}

template <class P, bool Int4, int M = 1, int N = 1>
void fill_avx2_int_tiles(int_kernels& t) {
  t.tiles[Int4][M - 1][N - 1] = &avx2_int_tile<P, Int4, M, N>;
  if constexpr (N < 8) {
    fill_avx2_int_tiles<P, Int4, M, N + 1>(t);
  } else if constexpr (M < 4) {
    fill_avx2_int_tiles<P, Int4, M + 1, 1>(t);
  }
}

}  // namespace
}  // namespace moereg::cpu
