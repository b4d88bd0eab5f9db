// SPDX-License-Identifier: Apache-2.0
// The cpu backend's C table: every slot turns C++ exceptions into a host status.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "cpu_kernels.h"
#include "cpu_moe.h"
#include "moereg/abi/moereg_backend.h"

namespace {

const moereg_host_api* host = nullptr;

using moereg::cpu::kernel_table;

// The best kernel table this CPU runs; MOEREG_CPU_ISA=avx512bf16|avx512f|avx2|scalar forces a
// lower one (for tests and for comparing kernels on one machine), and amx_emulated adds the
// portable model of the matrix unit to the best vector set (for tests of the AMX path on CPUs
// without it).
kernel_table pick_kernels() {
  kernel_table t;
  const char* force = std::getenv("MOEREG_CPU_ISA");
  std::string want = force ? force : "";
  const bool best = want.empty() || want == "amx" || want == "amx_emulated";
  if (moereg::cpu::cpu_has_avx512bf16() && (best || want == "avx512bf16")) {
    moereg::cpu::fill_avx512bf16(t);
  } else if (moereg::cpu::cpu_has_avx512() && (best || want == "avx512bf16" || want == "avx512f")) {
    moereg::cpu::fill_avx512(t);
  } else if (moereg::cpu::cpu_has_avx2() && want != "scalar") {
    moereg::cpu::fill_avx2(t);
  } else {
    moereg::cpu::fill_scalar(t);
  }
  if (want == "amx_emulated") {
    moereg::cpu::fill_amx_emulated(t.unit);
  } else if ((want.empty() || want == "amx") && moereg::cpu::cpu_has_amx()) {
    // MOEREG_CPU_UNIT_PREFETCH: prefetch distance of weight rows read from memory, in
    // 32-element steps (default 2: memory-bound layers ran up to 1.25x faster than without;
    // 4-16 were slower).
    const char* pf = std::getenv("MOEREG_CPU_UNIT_PREFETCH");
    moereg::cpu::fill_amx(t.unit, pf ? static_cast<int>(std::strtol(pf, nullptr, 10)) : 2);
  }
  // MOEREG_CPU_UNIT_PANELS=0 reads weight tiles in place (for comparison and tests).
  if (const char* pn = std::getenv("MOEREG_CPU_UNIT_PANELS")) t.unit.panels = std::strtol(pn, nullptr, 10) != 0;
  // MOEREG_CPU_UNIT_TILE_WEIGHTS=1 copies the bf16 experts into the unit's tile order at create.
  if (const char* tw = std::getenv("MOEREG_CPU_UNIT_TILE_WEIGHTS")) t.unit.tile_weights = std::strtol(tw, nullptr, 10) != 0;
  // Reading weights in place, a single token per expert (T = 1) streams them fastest through
  // the vector tiles, and from two tokens on the unit was as fast or faster; from the unit's
  // tile-ordered copy every expert runs there (as fast or faster at T = 1 too, and then the
  // originals are not read again after create). Measured on a 16-core Xeon.
  t.unit_min_rows = t.unit.tile_weights ? 1 : 2;
  // MOEREG_CPU_UNIT_ROWS overrides it (tests use 1 to run every expert on the unit).
  if (const char* ur = std::getenv("MOEREG_CPU_UNIT_ROWS")) t.unit_min_rows = static_cast<int>(std::strtol(ur, nullptr, 10));
  // MOEREG_CPU_PANEL_ROWS overrides from how many rows of an item bf16/f32 weights take the
  // panel path (0 = never; tests use 1 to run it on every kernel set).
  if (const char* pr = std::getenv("MOEREG_CPU_PANEL_ROWS")) t.panel_min_rows = static_cast<int>(std::strtol(pr, nullptr, 10));
  return t;
}

int online_cores() {
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

int32_t cpu_probe(char* reason, size_t reason_size) noexcept {
  // Always runnable; the score says how well: vector units lift it above a plain loop.
  int32_t score = 10;
  const char* isa = "no AVX2: portable scalar kernels";
  if (moereg::cpu::cpu_has_amx() && moereg::cpu::cpu_has_avx512bf16()) {
    score = 35;
    isa = "AMX-BF16 (tdpbf16ps) and AVX-512 BF16";
  } else if (moereg::cpu::cpu_has_avx512bf16()) {
    score = 30;
    isa = "AVX-512 BF16 (vdpbf16ps)";
  } else if (moereg::cpu::cpu_has_avx512()) {
    score = 25;
    isa = "AVX-512F";
  } else if (moereg::cpu::cpu_has_avx2()) {
    score = 20;
    isa = "AVX2+FMA";
  }
  if (reason && reason_size) std::snprintf(reason, reason_size, "%s, %d cores", isa, online_cores());
  return score;
}

moereg_status* cpu_create(const moereg_moe_weights* weights, const moereg_routing_params* routing,
                          const moereg_backend_options* options, moereg_backend** out) noexcept {
  MOEREG_API_BEGIN
  (void)routing;  // the host routes; the cpu backend has no `route` slot
  if (!weights || !out) return host->status_create(MOEREG_INVALID_ARGUMENT, "create: weights and out are required");
  int threads = options && options->threads > 0 ? options->threads : online_cores();
  try {
    // MOEREG_CPU_KBLOCK sets the K pass length (tests use a small one so fixtures exercise
    // the multi-pass path; benchmarks can compare lengths on one machine).
    const char* kb = std::getenv("MOEREG_CPU_KBLOCK");
    std::int64_t k_block = kb ? std::strtoll(kb, nullptr, 10) : 0;
    auto* engine = new moereg::cpu::moe_engine(*weights, threads, pick_kernels(), 64, k_block > 0 ? k_block : 0);
    *out = reinterpret_cast<moereg_backend*>(engine);
  } catch (const moereg::cpu::unsupported& e) {
    return host->status_create(MOEREG_UNSUPPORTED, e.what());
  } catch (const std::invalid_argument& e) {
    return host->status_create(MOEREG_INVALID_ARGUMENT, e.what());
  }
  return nullptr;
  MOEREG_API_END
}

moereg_status* cpu_forward(moereg_backend* backend, const moereg_tensor_view* x, const moereg_tensor_view* ids,
                           const moereg_tensor_view* weights, moereg_tensor_view* out) noexcept {
  MOEREG_API_BEGIN
  if (!backend || !x || !ids || !weights || !out)
    return host->status_create(MOEREG_INVALID_ARGUMENT, "forward: a required argument is NULL");
  try {
    reinterpret_cast<moereg::cpu::moe_engine*>(backend)->forward(*x, *ids, *weights, *out);
  } catch (const moereg::cpu::unsupported& e) {
    return host->status_create(MOEREG_UNSUPPORTED, e.what());
  } catch (const std::invalid_argument& e) {
    return host->status_create(MOEREG_INVALID_ARGUMENT, e.what());
  }
  return nullptr;
  MOEREG_API_END
}

void cpu_destroy(moereg_backend* backend) noexcept { delete reinterpret_cast<moereg::cpu::moe_engine*>(backend); }

moereg_status* cpu_describe(moereg_backend* backend, moereg_sink sink) noexcept {
  MOEREG_API_BEGIN
  if (!backend || !sink.write) return host->status_create(MOEREG_INVALID_ARGUMENT, "describe: NULL backend or sink");
  std::string s = reinterpret_cast<moereg::cpu::moe_engine*>(backend)->describe();
  sink.write(sink.context, s.data(), s.size());
  return nullptr;
  MOEREG_API_END
}

const moereg_backend_api cpu_api = {
    MOEREG_PLUGIN_API_VERSION,
    "cpu",
    "0.1.0",
    &cpu_probe,
    &cpu_create,
    &cpu_forward,
    &cpu_destroy,
    nullptr,  // route: the host routes
    nullptr,  // alloc: host memory only
    nullptr,
    nullptr,
    nullptr,
    &cpu_describe,
    nullptr,
};

}  // namespace

extern "C" MOEREG_EXPORT const moereg_backend_api* moereg_backend_entry(const moereg_host_api* h) noexcept {
  if (!h || h->api_version < MOEREG_PLUGIN_API_MIN || !h->status_create) return nullptr;
  host = h;
  return &cpu_api;
}
