// SPDX-License-Identifier: Apache-2.0
#include "cpu_options.h"

#include "cpu_ggml_blocks.h"
#include "cpu_numa.h"

#include <cerrno>
#include <cstdlib>
#include <stdexcept>

namespace moereg::cpu {
namespace {

const char* const known_keys =
    "isa, k_block, unit_k_block, unit_prefetch, stream_y, unit_panels, tile_weights, copy_memory_limit, unit_min_rows, panel_min_rows, phases, quantize, quantize_group, int_dot, numa, pool_spin_us";

std::int64_t integer(const std::string& key, const char* value, std::int64_t lo, std::int64_t hi) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(value, &end, 10);
  if (!*value || *end || errno || v < lo || v > hi)
    throw std::invalid_argument("backend option " + key + "=" + value + ": expected an integer in " + std::to_string(lo) +
                                ".." + std::to_string(hi));
  return v;
}

bool boolean(const std::string& key, const char* value) {
  const std::string v = value;
  if (v == "1" || v == "true" || v == "on") return true;
  if (v == "0" || v == "false" || v == "off") return false;
  throw std::invalid_argument("backend option " + key + "=" + v + ": expected 0 or 1 (or true/false, on/off)");
}

// The integer tiles follow the vector set asked for (isa=avx_vnni: the AVX2 float tiles with
// AVX-VNNI integer ones), each falling back to the best the CPU has below it; the AMX INT8
// unit goes with the AMX unit (real or emulated).
void pick_int_kernels(const cpu_options& o, kernel_table& t) {
  const std::string& want = o.isa;
  const bool wide = want.empty() || want == "amx" || want == "amx_emulated" || want == "avx512bf16" || want == "avx512f";
  if (wide && cpu_has_avx512vnni()) {
    fill_int_avx512vnni(t.ints);
  } else if ((wide || want == "avx_vnni") && cpu_has_avx_vnni()) {
    fill_int_avx_vnni(t.ints);
  } else if (want != "scalar" && cpu_has_avx2()) {
    fill_int_avx2(t.ints);
  } else {
    fill_int_scalar(t.ints);
  }
  if (want == "amx_emulated") {
    fill_int_amx_emulated(t.ints.unit);
  } else if (t.unit.name && cpu_has_amx_int8()) {
    fill_int_amx(t.ints.unit, o.stream_y);
  }
  // Measured on the 2-core development VM (Sapphire Rapids): see docs/backends.md.
  t.int_unit_min_rows = o.unit_min_rows >= 0 ? o.unit_min_rows : 2;
}

}  // namespace

cpu_options parse_cpu_options(const moereg_backend_option* kv, std::size_t count) {
  cpu_options o;
  for (std::size_t i = 0; i < count; ++i) {
    if (!kv || !kv[i].key || !kv[i].value) throw std::invalid_argument("backend options: a NULL key or value");
    const std::string key = kv[i].key;
    const char* value = kv[i].value;
    if (key == "isa") {
      const std::string v = value;
      if (v != "" && v != "amx" && v != "amx_emulated" && v != "avx512bf16" && v != "avx512f" && v != "avx_vnni" && v != "avx2" &&
          v != "scalar")
        throw std::invalid_argument("backend option isa=" + v +
                                    ": expected amx, avx512bf16, avx512f, avx_vnni, avx2, scalar or amx_emulated");
      o.isa = v;
    } else if (key == "k_block") {
      o.k_block = integer(key, value, 1, std::int64_t{1} << 30);
    } else if (key == "unit_k_block") {
      o.unit_k_block = integer(key, value, 1, std::int64_t{1} << 30);
    } else if (key == "unit_prefetch") {
      o.unit_prefetch = static_cast<int>(integer(key, value, 0, 64));
    } else if (key == "unit_panels") {
      o.unit_panels = boolean(key, value) ? 1 : 0;
    } else if (key == "tile_weights") {
      o.tile_weights = boolean(key, value) ? 1 : 0;
    } else if (key == "copy_memory_limit") {
      o.copy_memory_limit = integer(key, value, 0, std::int64_t{1} << 62);
    } else if (key == "unit_min_rows") {
      o.unit_min_rows = static_cast<int>(integer(key, value, 1, 1 << 30));
    } else if (key == "panel_min_rows") {
      o.panel_min_rows = static_cast<int>(integer(key, value, 0, 1 << 30));
    } else if (key == "phases") {
      o.phases = boolean(key, value);
    } else if (key == "stream_y") {
      o.stream_y = boolean(key, value);
    } else if (key == "pool_spin_us") {
      o.pool_spin_us = static_cast<int>(integer(key, value, 0, 1000000));
    } else if (key == "quantize") {
      const std::string v = value;
      const int ggml = v == "q8_0" ? elem_q8_0 : v == "q4_0" ? elem_q4_0 : v == "q4_k" ? elem_q4_k : v == "q6_k" ? elem_q6_k : -1;
      if (v != "none" && v != "int8" && v != "int4" && ggml < 0)
        throw std::invalid_argument("backend option quantize=" + v + ": expected none, int8, int4, q8_0, q4_0, q4_k or q6_k");
      o.quantize = v == "int8" ? 8 : v == "int4" ? 4 : 0;
      o.quantize_ggml = ggml;
    } else if (key == "numa") {
      o.numa = value;
      if (o.numa != "auto" && o.numa != "off") parse_numa_topology(o.numa);  // refused here, naming the text
    } else if (key == "int_dot") {
      const std::string v = value;
      if (v != "auto" && v != "on" && v != "off")
        throw std::invalid_argument("backend option int_dot=" + v + ": expected auto, on or off");
      o.int_dot = v == "auto" ? -1 : v == "on" ? 1 : 0;
    } else if (key == "quantize_group") {
      o.quantize_group = integer(key, value, 0, std::int64_t{1} << 30);
    } else {
      throw std::invalid_argument("backend option '" + key + "' is not a cpu backend option (it takes " + known_keys + ")");
    }
  }
  return o;
}

// A forced lower set that the CPU lacks falls back to the best one it has; amx_emulated adds
// the portable model of the matrix unit to the best vector set (tests of the AMX path on CPUs
// without it).
kernel_table pick_kernels(const cpu_options& o) {
  kernel_table t;
  const std::string& want = o.isa;
  const bool best = want.empty() || want == "amx" || want == "amx_emulated";
  if (cpu_has_avx512bf16() && (best || want == "avx512bf16")) {
    fill_avx512bf16(t);
  } else if (cpu_has_avx512() && (best || want == "avx512bf16" || want == "avx512f")) {
    fill_avx512(t);
  } else if (cpu_has_avx2() && want != "scalar") {
    fill_avx2(t);
  } else {
    fill_scalar(t);
  }
  fill_ggml_widen(t);
  if (want == "amx_emulated") {
    fill_amx_emulated(t.unit);
  } else if ((want.empty() || want == "amx") && cpu_has_amx()) {
    // Prefetching weight rows 2 steps ahead ran memory-bound layers up to 1.25x faster than
    // none; 4-16 were slower.
    fill_amx(t.unit, o.unit_prefetch, o.stream_y);
  }
  t.stream_y = o.stream_y;
  if (o.unit_panels >= 0) t.unit.panels = o.unit_panels != 0;
  if (o.tile_weights >= 0) t.unit.tile_weights = t.unit.name && o.tile_weights != 0;
  // Reading weights in place, a single token per expert (T = 1) streams them fastest through
  // the vector tiles, and from two tokens on the unit was as fast or faster; from the unit's
  // tile-ordered copy every expert runs there (as fast or faster at T = 1 too, and then the
  // originals are not read again after create). Measured on a 16-core Xeon.
  t.unit_min_rows = o.unit_min_rows >= 0 ? o.unit_min_rows : t.unit.tile_weights ? 1 : 2;
  t.in_place_unit_min_rows = o.unit_min_rows >= 0 ? o.unit_min_rows : 2;
  t.copy_memory_limit = o.copy_memory_limit;
  // From the tile-ordered copy, passes of 256 (a block's two weight tiles, 16 KiB, stay in L1
  // for every pair of token tiles; the next block's and the next pass's tiles are prefetched
  // into L2 meanwhile) ran mixtral and deepseek T = 1024 1.1-1.2x faster than passes of 1024
  // (docs/bench-cpu.md, session 14). Read in place, the unit keeps k_block's passes.
  t.unit.pass_k = o.unit_k_block > 0 ? o.unit_k_block : t.unit.tile_weights ? 256 : 0;
  t.in_place_pass_k = o.unit_k_block > 0 ? o.unit_k_block : 0;
  if (o.panel_min_rows >= 0) t.panel_min_rows = o.panel_min_rows;
  pick_int_kernels(o, t);
  return t;
}

}  // namespace moereg::cpu
