// SPDX-License-Identifier: Apache-2.0
// Integer tiles on AVX-512 VNNI: vpdpbusd multiplies 64 unsigned bytes by 64 signed bytes and
// adds each four products into an int32 lane. The weights are the unsigned operand: int8
// codes with their sign bit flipped (w + 128), int4 codes as stored (q + 8), so each group's
// int32 sum carries bias x (sum of the activation codes), subtracted exactly in int32 before
// the sum is converted and scaled (the act_rows chunk sums). Per group part: cvt + one FMA
// with ws x as into f32 lanes; one horizontal sum per output at the end.
// Compiled with AVX-512 F/BW/VL + VNNI; runs only where cpu_has_avx512vnni() said yes.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu_int_dot.h"

namespace moereg::cpu {
namespace {

// 64 weights of chunk `k` (elements [k, k + valid)) as unsigned bytes, zeros past valid.
template <bool Int4>
inline __m512i weights_u8(const void* row, std::int64_t k, std::int64_t valid) {
  if constexpr (!Int4) {
    const std::int8_t* p = static_cast<const std::int8_t*>(row) + k;
    const __m512i w = valid >= 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8((~0ull) >> (64 - valid), p);
    return _mm512_xor_si512(w, _mm512_set1_epi8(static_cast<char>(0x80)));
  } else {
    // The chunk's 32 code bytes in both halves; the low half keeps the low nibbles (even k),
    // the high half shifts the high ones down (odd k): the act_rows permutation.
    const std::uint8_t* p = static_cast<const std::uint8_t*>(row) + k / 2;
    const std::int64_t bytes = (valid + 1) / 2;
    const __m256i b = bytes >= 32 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                                  : _mm256_maskz_loadu_epi8(static_cast<__mmask32>((1ull << bytes) - 1), p);
    __m512i v = _mm512_broadcast_i64x4(b);
    v = _mm512_mask_srli_epi16(v, static_cast<__mmask32>(0xFFFF0000u), v, 4);
    return _mm512_and_si512(v, _mm512_set1_epi8(15));
  }
}

// A single activation row (T = 1) streams each weight row once, in rows of H or I bytes
// (int4: half that), too short for the hardware prefetchers to ramp up: each row is
// prefetched this far ahead. On the loaded 2-core development VM, int4 at T = 1 ran ~1.2x
// faster with 256-1024 than with none (noisy; to be confirmed on the Xeon).
constexpr int prefetch_bytes = 512;

template <bool Int4, int M, int N>
void vnni_tile(const int_rows& r, float* c) {
  constexpr int bias = Int4 ? 8 : 128;
  const std::int64_t end = r.k0 + r.k_len < r.k ? r.k0 + r.k_len : r.k;
  __m512 accf[M][N];
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) accf[m][n] = _mm512_setzero_ps();
  std::int64_t chunk = r.k0 / int_chunk;
  while (chunk * int_chunk < end) {
    const std::int64_t g = chunk * int_chunk / r.group;
    std::int64_t stop = (g + 1) * r.group;
    if (stop > end) stop = end;
    if (stop > (chunk + int_flush_chunks) * int_chunk) stop = (chunk + int_flush_chunks) * int_chunk;
    __m512i acc[M][N];
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) acc[m][n] = _mm512_setzero_si512();
    std::int32_t asum[M] = {};
    for (; chunk * int_chunk < stop; ++chunk) {
      const std::int64_t k = chunk * int_chunk, valid = end - k < int_chunk ? end - k : int_chunk;
      __m512i av[M];
      for (int m = 0; m < M; ++m) {
        av[m] = _mm512_loadu_si512(r.a[m] + k);  // padded to whole chunks
        asum[m] += r.a_sum[m][chunk];
      }
      for (int n = 0; n < N; ++n) {
        if (M == 1) _mm_prefetch(static_cast<const char*>(r.b[n]) + (Int4 ? k / 2 : k) + prefetch_bytes, _MM_HINT_T0);
        const __m512i w = weights_u8<Int4>(r.b[n], k, valid);
        for (int m = 0; m < M; ++m) acc[m][n] = _mm512_dpbusd_epi32(acc[m][n], w, av[m]);
      }
    }
    for (int m = 0; m < M; ++m) {
      const __m512i corr = _mm512_maskz_set1_epi32(1, bias * asum[m]);
      for (int n = 0; n < N; ++n) {
        const __m512i exact = _mm512_sub_epi32(acc[m][n], corr);
        accf[m][n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), _mm512_set1_ps(r.b_scale[n][g] * r.a_scale[m][g]), accf[m][n]);
      }
    }
  }
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) c[m * N + n] = _mm512_reduce_add_ps(accf[m][n]);
}

template <bool Int4, int M = 1, int N = 1>
void fill_vnni_tiles(int_kernels& t) {
  t.tiles[Int4][M - 1][N - 1] = &vnni_tile<Int4, M, N>;
  if constexpr (N < 8) {
    fill_vnni_tiles<Int4, M, N + 1>(t);
  } else if constexpr (M < 4) {
    fill_vnni_tiles<Int4, M + 1, 1>(t);
  }
}

}  // namespace

void fill_int_avx512vnni(int_kernels& k) {
  k.isa = "avx512vnni";
  k.quantize = &int_quantize_avx512;
  // M x N int32 sums and f32 sums, M activation registers and a weight register: 2 x 4
  // (and 1 x 8 for a single row) use 18 of the 32 registers.
  k.tile_m = 2;
  k.tile_n = 4;
  fill_vnni_tiles<false>(k);
  fill_vnni_tiles<true>(k);
}

}  // namespace moereg::cpu
