// SPDX-License-Identifier: Apache-2.0
// AMX tiles (tdpbf16ps), and the AVX-512 data movement around them (every CPU with AMX has
// AVX-512 BF16). Compiled with AMX and AVX-512 flags; runs only where cpu_has_amx() said yes.
// One tile configuration for everything (cpu_amx_config.h): tmm0-3 the accumulators c[0..3],
// tmm4-5 the weight rows A_0, A_1, tmm6-7 the activations B_0, B_1.
// GCC 12 warns inside its own AVX-512 intrinsics (an intentionally undefined source).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu_amx_config.h"
#include "cpu_avx512_tiles.h"
#include "cpu_kernels.h"

namespace moereg::cpu {
namespace {

// Tile register numbers are immediates, so each (na, nb) shape is its own loop. PD > 0:
// the weight rows PD steps ahead are prefetched (the hardware streamers track fewer rows
// than the 16 or 32 a block walks through at once).
template <int NA, int NB, int PD>
void run(const bf16_rows* a, const void* const* b, std::int64_t steps, float* c, bool accumulate, const l2_ahead& ahead) {
  // GCC 12's _tile_loadd does not tell the compiler that it reads memory; the stores this
  // thread made to c (and every operand) must be done before the first one.
  __asm__ volatile("" ::: "memory");
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
  const char* b0 = static_cast<const char*>(b[0]);
  const char* b1 = NB > 1 ? static_cast<const char*>(b[1]) : nullptr;
  const std::int64_t s0 = a[0].stride, s1 = NA > 1 ? a[1].stride : 0;
  const std::int64_t t0 = a[0].step, t1 = NA > 1 ? a[1].step : 0;
  std::int64_t per_step[l2_ahead::max_runs];  // lines of each run per step
  for (int i = 0; i < ahead.runs; ++i) per_step[i] = (ahead.lines[i] + steps - 1) / steps;
  for (std::int64_t s = 0; s < steps; ++s) {
    for (int i = 0; i < ahead.runs; ++i)
      for (std::int64_t l = s * per_step[i]; l < (s + 1) * per_step[i] && l < ahead.lines[i]; ++l)
        _mm_prefetch(ahead.p[i] + 64 * l, _MM_HINT_T1);
    if (PD > 0 && s + PD < steps)
      for (int r = 0; r < 16; ++r) {
        _mm_prefetch(a0 + t0 * (s + PD) + r * s0, _MM_HINT_T0);
        if (NA > 1) _mm_prefetch(a1 + t1 * (s + PD) + r * s1, _MM_HINT_T0);
      }
    _tile_loadd(4, a0 + t0 * s, s0);
    _tile_loadd(6, b0 + 1024 * s, 64);
    _tile_dpbf16ps(0, 4, 6);
    if (NB > 1) {
      _tile_loadd(7, b1 + 1024 * s, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if (NA > 1) {
      _tile_loadd(5, a1 + t1 * s, s1);
      _tile_dpbf16ps(2, 5, 6);
      if (NB > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c, 64);
  if (NB > 1) _tile_stored(1, c + 256, 64);
  if (NA > 1) _tile_stored(2, c + 512, 64);
  if (NA > 1 && NB > 1) _tile_stored(3, c + 768, 64);
}

template <int PD>
void amx_block(const bf16_rows* a, int na, const void* const* b, int nb, std::int64_t steps, float* c, bool accumulate,
               const l2_ahead& ahead) {
  if (na > 1) {
    if (nb > 1) run<2, 2, PD>(a, b, steps, c, accumulate, ahead);
    else run<2, 1, PD>(a, b, steps, c, accumulate, ahead);
  } else {
    if (nb > 1) run<1, 2, PD>(a, b, steps, c, accumulate, ahead);
    else run<1, 1, PD>(a, b, steps, c, accumulate, ahead);
  }
}

// A step's 32 bf16 of each token are 16 pairs; the tile wants pair kk of every token in row kk.
void amx_pack(const std::uint16_t* const* rows, std::int64_t k_len, std::uint16_t* dst) {
  for (std::int64_t k0 = 0; k0 < k_len; k0 += 32, dst += 512) {
    const std::int64_t left = k_len - k0;
    const __mmask32 mask = left >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << left) - 1);
    __m512i r[16];
    for (int t = 0; t < 16; ++t) r[t] = rows[t] ? _mm512_maskz_loadu_epi16(mask, rows[t] + k0) : _mm512_setzero_si512();
    transpose16(r);
    for (int kk = 0; kk < 16; ++kk) _mm512_storeu_si512(dst + 32 * kk, r[kk]);
  }
}

__m512i silu_mul_bf16(const float* g, const float* u) {
  const __m512 h = silu_mul16(_mm512_loadu_ps(g), _mm512_loadu_ps(u));
  return _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(h));  // round to nearest even, one per 32-bit lane
}

void amx_silu_mul(const float* g, const float* u, int rows, std::uint16_t* dst) {
  for (int r = 0; r < rows; r += 2) {
    const __m512i lo = silu_mul_bf16(g + 16 * r, u + 16 * r);
    const __m512i hi = r + 1 < rows ? silu_mul_bf16(g + 16 * (r + 1), u + 16 * (r + 1)) : _mm512_setzero_si512();
    _mm512_storeu_si512(dst + 16 * r, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
  }
}

// Row by row, so each is one sequential stream; the next row is prefetched a line per line.
void amx_load_rows(const void* src, std::int64_t stride, int rows, std::int64_t k_len, std::int64_t steps,
                   std::uint16_t* dst) {
  for (int r = 0; r < 16; ++r) {
    const auto* row = reinterpret_cast<const std::uint16_t*>(static_cast<const char*>(src) + r * stride);
    for (std::int64_t s = 0; s < steps; ++s) {
      const std::int64_t left = k_len - 32 * s;
      __m512i v = _mm512_setzero_si512();
      if (r < rows && left > 0) {
        if (r + 1 < rows) _mm_prefetch(reinterpret_cast<const char*>(row + 32 * s) + stride, _MM_HINT_T0);
        v = left >= 32 ? _mm512_loadu_si512(row + 32 * s)
                       : _mm512_maskz_loadu_epi16(static_cast<__mmask32>((1u << left) - 1), row + 32 * s);
      }
      _mm512_storeu_si512(dst + 512 * s + 32 * r, v);
    }
  }
}


}  // namespace

void fill_amx(matrix_unit& u, int prefetch_steps, bool stream_y) {
  u.name = "amx";
  u.panels = false;  // measured: no faster than in-place tiles, and slower when memory-bound
  // Measured on a 16-core Xeon (bench/cpu/device_ab.sh, docs/bench-cpu.md): deepseek-shaped
  // layers at T = 1024 ran 1.3-1.45x faster from the tile-ordered copy, mixtral's the same.
  u.tile_weights = true;
  u.begin = &amx_load_eight_full_tiles;
  u.end = &amx_release_tiles;
  u.prefetch_steps = prefetch_steps <= 0 ? 0 : prefetch_steps <= 2 ? 2 : prefetch_steps <= 4 ? 4 : prefetch_steps <= 8 ? 8 : 16;
  u.block = &amx_block<0>;
  u.block_first = u.prefetch_steps == 0   ? &amx_block<0>
                  : u.prefetch_steps == 2 ? &amx_block<2>
                  : u.prefetch_steps == 4 ? &amx_block<4>
                  : u.prefetch_steps == 8 ? &amx_block<8>
                                          : &amx_block<16>;
  u.pack = &amx_pack;
  u.silu_mul = &amx_silu_mul;
  u.scale_out = tile_scale_out(stream_y);
  u.load_rows = &amx_load_rows;
}

}  // namespace moereg::cpu
