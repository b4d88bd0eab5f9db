// SPDX-License-Identifier: Apache-2.0
// The cpu backend's C table: every slot turns C++ exceptions into a host status (the SDK's
// MOEREG_API_END: moereg::plugin::unsupported -> UNSUPPORTED, std::invalid_argument ->
// INVALID_ARGUMENT).
#include <sched.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "cpu_kernels.h"
#include "cpu_moe.h"
#include "cpu_numa.h"
#include "cpu_options.h"
#include "moereg/abi/moereg_backend.h"

namespace {

const moereg_host_api* host = nullptr;

// The CPUs this process may run on (taskset, cpusets), not every online CPU: threads beyond
// those only time-share. The moereg front ends pass an explicit count that also honours
// cgroup quotas (moereg/base/parallel.h); this is the default for other hosts of the table.
int online_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
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

// int8 defaults to one scale per row; int4 to groups of 128 inputs (a scale per row loses
// too much: measured in docs/backends.md).
moereg::cpu::online_quant online_quant_of(const moereg::cpu::cpu_options& o) {
  moereg::cpu::online_quant q;
  q.bits = o.quantize;
  q.group = o.quantize_group >= 0 ? o.quantize_group : o.quantize == 4 ? 128 : 0;
  q.ggml = o.quantize_ggml;
  q.int_dot = o.int_dot;
  return q;
}

moereg_backend* make_engine(const moereg_moe_weights* weights, const moereg_backend_options* options,
                            const moereg_backend_option* kv, size_t count) {
  if (!weights) throw std::invalid_argument("create: weights and out are required");
  // An older host's weights end before the fields of later APIs: read only what it wrote.
  moereg_moe_weights w{};
  std::memcpy(&w, weights,
              host->api_version >= 3   ? sizeof w
              : host->api_version == 2 ? offsetof(moereg_moe_weights, shared_w13_scale)
                                       : offsetof(moereg_moe_weights, weight_quant));
  const moereg::cpu::cpu_options o = moereg::cpu::parse_cpu_options(kv, count);
  const int threads = options && options->threads > 0 ? options->threads : online_cores();
  return reinterpret_cast<moereg_backend*>(
      new moereg::cpu::moe_engine(w, threads, moereg::cpu::pick_kernels(o), 64, o.k_block, o.phases, online_quant_of(o),
                                  o.numa == "off"    ? moereg::cpu::numa_topology{}
                                  : o.numa == "auto" ? moereg::cpu::read_numa_topology()
                                                     : moereg::cpu::parse_numa_topology(o.numa),
                                  o.pool_spin_us));
}

// The host routes; the cpu backend has no `route` slot, so `routing` is not read.
moereg_status* cpu_create(const moereg_moe_weights* weights, const moereg_routing_params*,
                          const moereg_backend_options* options, moereg_backend** out) noexcept {
  MOEREG_API_BEGIN
  if (!out) throw std::invalid_argument("create: weights and out are required");
  *out = make_engine(weights, options, nullptr, 0);
  return nullptr;
  MOEREG_API_END
}

moereg_status* cpu_create_with_options(const moereg_moe_weights* weights, const moereg_routing_params*,
                                       const moereg_backend_options* options, const moereg_backend_option* kv, size_t count,
                                       moereg_backend** out) noexcept {
  MOEREG_API_BEGIN
  if (!out) throw std::invalid_argument("create: weights and out are required");
  *out = make_engine(weights, options, kv, count);
  return nullptr;
  MOEREG_API_END
}

moereg_status* cpu_forward(moereg_backend* backend, const moereg_tensor_view* x, const moereg_tensor_view* ids,
                           const moereg_tensor_view* weights, moereg_tensor_view* out) noexcept {
  MOEREG_API_BEGIN
  if (!backend || !x || !ids || !weights || !out) throw std::invalid_argument("forward: a required argument is NULL");
  reinterpret_cast<moereg::cpu::moe_engine*>(backend)->forward(*x, *ids, *weights, *out);
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
    &cpu_create_with_options,
};

}  // namespace

extern "C" MOEREG_EXPORT const moereg_backend_api* moereg_backend_entry(const moereg_host_api* h) noexcept {
  if (!h || h->api_version < MOEREG_PLUGIN_API_MIN || !h->status_create) return nullptr;
  host = h;
  return &cpu_api;
}
