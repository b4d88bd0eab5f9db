// SPDX-License-Identifier: Apache-2.0
// cpu_amx_config.h - the one AMX tile configuration of the CPU backend: eight 16 x 64-byte
// tiles, tmm0-3 the accumulators, tmm4-5 the weight rows, tmm6-7 the activations, for the
// bf16 unit (tdpbf16ps, cpu_kernels_amx.cpp) and the int8 unit (tdpbssd, cpu_int_dot_amx.cpp)
// alike. Include only from files compiled with -mamx-tile.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace moereg::cpu {

struct alignas(64) amx_tile_config {
  std::uint8_t palette;
  std::uint8_t start_row;
  std::uint8_t reserved[14];
  std::uint16_t colsb[16];
  std::uint8_t rows[16];
};

// Constant-initialized, so it is in memory before any call: GCC 12's _tile_loadconfig tells
// the compiler it reads only 8 bytes of the configuration, so the stores filling a local one
// could be dropped as dead (and ldtilecfg would then fault on a garbage palette).
inline constexpr amx_tile_config amx_eight_full_tiles = {
    1, 0, {}, {64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0}, {16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0}};

// Internal linkage: each unit, compiled with its own AMX flags, keeps its own copy.
static inline void amx_load_eight_full_tiles() {
  __asm__ volatile("" ::: "memory");
  _tile_loadconfig(&amx_eight_full_tiles);
}

static inline void amx_release_tiles() { _tile_release(); }

}  // namespace moereg::cpu
