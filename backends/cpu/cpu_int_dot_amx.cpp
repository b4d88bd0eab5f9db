// SPDX-License-Identifier: Apache-2.0
// AMX INT8 (tdpbssd: 16 x 16 x 64 signed byte products into int32 per instruction, twice the
// products of tdpbf16ps), and the AVX-512 data movement around it: the activations' B tiles
// (a 16 x 16 transpose of 4-byte groups) and the weights' A tiles (int8 copied, int4 unpacked
// in registers and recentred to q - 8, 16 rows x one K pass at a time: never a whole-layer
// copy). The bf16 unit's tile configuration (cpu_amx_config.h): tmm0-3 the int32 accumulators,
// tmm4-5 weight rows, tmm6-7 activations.
// Compiled with AMX and AVX-512 flags; runs only where cpu_has_amx_int8() said yes.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu_amx_config.h"
#include "cpu_avx512_tiles.h"
#include "cpu_int_dot.h"

namespace moereg::cpu {
namespace {

template <int NA, int NB>
void int_run(const int8_rows* a, const void* const* b, std::int64_t steps, std::int32_t* c, bool accumulate) {
  __asm__ volatile("" ::: "memory");  // GCC 12's _tile_loadd does not say it reads memory
  if (accumulate) {
    _tile_loadd(0, c, 64);
    if (NB > 1) _tile_loadd(1, c + 256, 64);
    if (NA > 1) _tile_loadd(2, c + 512, 64);
    if (NA > 1 && NB > 1) _tile_loadd(3, c + 768, 64);
  } else {
    _tile_zero(0);
    if (NB > 1) _tile_zero(1);
    if (NA > 1) _tile_zero(2);
    if (NA > 1 && NB > 1) _tile_zero(3);
  }
  const char* a0 = static_cast<const char*>(a[0].p);
  const char* a1 = NA > 1 ? static_cast<const char*>(a[1].p) : nullptr;
  const std::int64_t s0 = a[0].stride, s1 = NA > 1 ? a[1].stride : 0, t0 = a[0].step, t1 = NA > 1 ? a[1].step : 0;
  const char* b0 = static_cast<const char*>(b[0]);
  const char* b1 = NB > 1 ? static_cast<const char*>(b[1]) : nullptr;
  for (std::int64_t s = 0; s < steps; ++s) {
    _tile_loadd(4, a0 + t0 * s, s0);
    _tile_loadd(6, b0 + 1024 * s, 64);
    _tile_dpbssd(0, 4, 6);
    if (NB > 1) {
      _tile_loadd(7, b1 + 1024 * s, 64);
      _tile_dpbssd(1, 4, 7);
    }
    if (NA > 1) {
      _tile_loadd(5, a1 + t1 * s, s1);
      _tile_dpbssd(2, 5, 6);
      if (NB > 1) _tile_dpbssd(3, 5, 7);
    }
  }
  _tile_stored(0, c, 64);
  if (NB > 1) _tile_stored(1, c + 256, 64);
  if (NA > 1) _tile_stored(2, c + 512, 64);
  if (NA > 1 && NB > 1) _tile_stored(3, c + 768, 64);
}

void int_amx_block(const int8_rows* a, int na, const void* const* b, int nb, std::int64_t steps, std::int32_t* c,
                   bool accumulate) {
  if (na > 1) {
    if (nb > 1) int_run<2, 2>(a, b, steps, c, accumulate);
    else int_run<2, 1>(a, b, steps, c, accumulate);
  } else {
    if (nb > 1) int_run<1, 2>(a, b, steps, c, accumulate);
    else int_run<1, 1>(a, b, steps, c, accumulate);
  }
}

// Token t's chunk is 16 groups of 4 codes; B row kk wants group kk of every token.
void int_amx_pack(const std::int8_t* const* rows, std::int64_t c0, std::int64_t steps, std::int8_t* dst) {
  for (std::int64_t s = 0; s < steps; ++s, dst += 1024) {
    __m512i r[16];
    for (int t = 0; t < 16; ++t) r[t] = rows[t] ? _mm512_loadu_si512(rows[t] + (c0 + s) * int_chunk) : _mm512_setzero_si512();
    transpose16(r);
    for (int kk = 0; kk < 16; ++kk) _mm512_storeu_si512(dst + 64 * kk, r[kk]);
  }
}

void int_amx_load_rows(const void* src, std::int64_t stride, int rows, bool int4, std::int64_t k, std::int64_t c0,
                       std::int64_t steps, std::int8_t* dst) {
  for (int r = 0; r < 16; ++r) {
    const char* row = static_cast<const char*>(src) + r * stride;
    if (r + 1 < rows) _mm_prefetch(row + stride + (int4 ? c0 * 32 : c0 * 64), _MM_HINT_T0);
    for (std::int64_t s = 0; s < steps; ++s) {
      const std::int64_t k0 = (c0 + s) * int_chunk, valid = k - k0 < int_chunk ? k - k0 : int_chunk;
      __m512i v = _mm512_setzero_si512();
      if (r < rows && valid > 0) {
        if (!int4) {
          v = valid >= 64 ? _mm512_loadu_si512(row + k0) : _mm512_maskz_loadu_epi8((~0ull) >> (64 - valid), row + k0);
        } else {
          const std::int64_t bytes = (valid + 1) / 2;
          const __m256i b = bytes >= 32 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + k0 / 2))
                                        : _mm256_maskz_loadu_epi8(static_cast<__mmask32>((1ull << bytes) - 1), row + k0 / 2);
          v = _mm512_broadcast_i64x4(b);
          v = _mm512_mask_srli_epi16(v, static_cast<__mmask32>(0xFFFF0000u), v, 4);
          v = _mm512_and_si512(v, _mm512_set1_epi8(15));
          // Recentre to q - 8, zeros where the permuted position lies past k.
          const std::uint64_t lo = (1ull << bytes) - 1, hi = (1ull << (valid / 2)) - 1;
          v = _mm512_maskz_sub_epi8(lo | (hi << 32), v, _mm512_set1_epi8(8));
        }
      }
      _mm512_storeu_si512(dst + 1024 * s + 64 * r, v);
    }
  }
}

void int_amx_scale_acc(const std::int32_t* c, const float* ws, const float* as, float* acc, bool accumulate) {
  const __m512 a = _mm512_loadu_ps(as);
  for (int m = 0; m < 16; ++m) {
    const __m512 p = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(c + 16 * m)), _mm512_mul_ps(_mm512_set1_ps(ws[m]), a));
    _mm512_storeu_ps(acc + 16 * m, accumulate ? _mm512_add_ps(_mm512_loadu_ps(acc + 16 * m), p) : p);
  }
}

// Both epilogues compute along weight rows (one m per register) and transpose once.
void int_amx_silu_out(const float* g, const float* u, int rows, int tokens, float* const* h) {
  __m512i r[16];
  for (int m = 0; m < 16; ++m) r[m] = _mm512_castps_si512(silu_mul16(_mm512_loadu_ps(g + 16 * m), _mm512_loadu_ps(u + 16 * m)));
  transpose16(r);
  const __mmask16 mask = static_cast<__mmask16>((1u << rows) - 1);
  for (int t = 0; t < tokens; ++t) _mm512_mask_storeu_ps(h[t], mask, _mm512_castsi512_ps(r[t]));
}


}  // namespace

void fill_int_amx(int_unit& u, bool stream_y) {
  u.name = "amx_int8";
  u.begin = &amx_load_eight_full_tiles;
  u.end = &amx_release_tiles;
  u.block = &int_amx_block;
  u.pack = &int_amx_pack;
  u.load_rows = &int_amx_load_rows;
  u.scale_acc = &int_amx_scale_acc;
  u.silu_out = &int_amx_silu_out;
  u.scale_out = tile_scale_out(stream_y);
}

}  // namespace moereg::cpu
