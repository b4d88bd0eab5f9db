// SPDX-License-Identifier: Apache-2.0
// Portable tiles, for CPUs without AVX2 (and a check on the vector ones).
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "cpu_tile_impl.h"

namespace moereg::cpu {
namespace {

struct scalar_vec {
  using reg = float;
  static constexpr int W = 1;
  static reg zero() { return 0.0f; }
  static reg set1(float v) { return v; }
  static reg load(const float* p) { return *p; }
  static void store(float* p, reg v) { *p = v; }
  static reg mul(reg a, reg b) { return a * b; }
  static reg load_fp8(const std::uint8_t* p) { return fp8_e4m3_exact(*p) * (1.0f / 256.0f); }
  static reg load(const std::uint16_t* p) {
    std::uint32_t bits = static_cast<std::uint32_t>(*p) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  static reg fma(reg a, reg b, reg acc) { return acc + a * b; }
  static float sum(reg r) { return r; }
};

}  // namespace

void fill_scalar(kernel_table& t) {
  t.isa = "scalar";
  t.tile_m = 2;
  t.tile_n = 4;
  fma_tiles<scalar_vec>::fill(t);
  t.panel_min_rows = 0;
  t.panel_tile_m = 2;
  t.panel_tile_n = 4;
}

// Here, in the one kernel file compiled without ISA flags, so the check itself runs anywhere.
bool cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
bool cpu_has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}
bool cpu_has_avx512bf16() { return cpu_has_avx512() && __builtin_cpu_supports("avx512bf16"); }

bool cpu_has_amx() {
  if (!__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-bf16")) return false;
  // Linux (5.16+) keeps the 8 KiB tile data state off until a process asks for it; asking
  // again is harmless, so every call asks.
  constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
  return ::syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
}

}  // namespace moereg::cpu
