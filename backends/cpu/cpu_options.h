// SPDX-License-Identifier: Apache-2.0
// cpu_options.h - the cpu backend's options (moereg_backend_option key=value pairs given at
// create, `--backend-option` on the CLI), documented in docs/backends.md. Every knob has a
// default measured on the machines in docs/bench-cpu.md; the options exist for comparing
// settings on one machine and for tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "cpu_kernels.h"
#include "moereg/abi/moereg_backend.h"

namespace moereg::cpu {

struct cpu_options {
  std::string isa;           // "" best; avx512bf16|avx512f|avx_vnni|avx2|scalar force a lower set;
                             // amx (the default where present); amx_emulated (tests)
  int unit_prefetch = 2;     // AMX: prefetch distance of weight rows, in 32-element steps
  bool stream_y = true;      // AMX: the down tiles write y with streaming stores
  int unit_panels = -1;      // -1 default; 0 reads weight tiles in place; 1 copies per pass
  int tile_weights = -1;     // -1 the unit's default (on for AMX); 1 copies bf16 experts into
                             // the unit's tile order at create, 0 reads them in place
  std::int64_t copy_memory_limit = -1;  // -1 MemAvailable less an eighth; the most bytes a copy made at
                                        // create may take (tile-ordered: else read in place; quantize: refused)
  int unit_min_rows = -1;    // -1 default; tokens an expert needs to run on the unit
  int panel_min_rows = -1;   // -1 default; rows from which bf16/f32 weights take the panel path
  std::int64_t k_block = 0;  // 0 default (1024); K pass length of the tiles
  std::int64_t unit_k_block = 0;  // 0 default (256 with the tile-ordered copy, else k_block): the unit's K pass
  bool phases = false;       // at destroy, print each phase's time to stderr
  int pool_spin_us = 100;    // how long idle pool threads poll before sleeping (0: sleep at once)
  int quantize = 0;          // 0 none; 8 or 4: quantize bf16/f32 experts at create
  int quantize_ggml = -1;    // or the elem_type of quantize=q8_0|q4_0|q4_k|q6_k (ggml blocks)
  std::int64_t quantize_group = -1;  // -1 default (int8: 0 = whole row; int4: 128)
  int int_dot = -1;           // -1 auto (on where quantize=int8|int4 allows), 0 off (f32/bf16 panels), 1 on
  std::string numa = "auto";  // auto (sysfs), off, or an injected topology "0-3;4-7"
};

// Parses `count` options; throws std::invalid_argument naming the key and what it accepts.
cpu_options parse_cpu_options(const moereg_backend_option* kv, std::size_t count);

// The best kernel table this CPU runs, as the options adjust it.
kernel_table pick_kernels(const cpu_options& o);

}  // namespace moereg::cpu
