// AMX tiles (tdpbf16ps). Compiled with -mamx-tile -mamx-bf16; runs only where cpu_has_amx()
// said yes. One tile configuration for everything: eight 16 x 64-byte tiles, tmm0-3 the
// accumulators c[0..3], tmm4-5 the weight rows A_0, A_1, tmm6-7 the activations B_0, B_1.
#include <immintrin.h>

#include "cpu_kernels.h"

namespace moereg::cpu {
namespace {

struct alignas(64) tile_config {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

void amx_begin() {
  tile_config cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

void amx_end() { _tile_release(); }

// Tile register numbers are immediates, so each (na, nb) shape is its own loop.
template <int NA, int NB>
void run(const bf16_rows* a, const void* const* b, std::int64_t steps, float* c, bool accumulate) {
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
  for (std::int64_t s = 0; s < steps; ++s) {
    _tile_loadd(4, a0 + 64 * s, s0);
    _tile_loadd(6, b0 + 1024 * s, 64);
    _tile_dpbf16ps(0, 4, 6);
    if (NB > 1) {
      _tile_loadd(7, b1 + 1024 * s, 64);
      _tile_dpbf16ps(1, 4, 7);
    }
    if (NA > 1) {
      _tile_loadd(5, a1 + 64 * s, s1);
      _tile_dpbf16ps(2, 5, 6);
      if (NB > 1) _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c, 64);
  if (NB > 1) _tile_stored(1, c + 256, 64);
  if (NA > 1) _tile_stored(2, c + 512, 64);
  if (NA > 1 && NB > 1) _tile_stored(3, c + 768, 64);
}

void amx_block(const bf16_rows* a, int na, const void* const* b, int nb, std::int64_t steps, float* c, bool accumulate) {
  if (na > 1) {
    if (nb > 1) run<2, 2>(a, b, steps, c, accumulate);
    else run<2, 1>(a, b, steps, c, accumulate);
  } else {
    if (nb > 1) run<1, 2>(a, b, steps, c, accumulate);
    else run<1, 1>(a, b, steps, c, accumulate);
  }
}

}  // namespace

void fill_amx(matrix_unit& u) {
  u.name = "amx";
  u.begin = &amx_begin;
  u.end = &amx_end;
  u.block = &amx_block;
}

}  // namespace moereg::cpu
