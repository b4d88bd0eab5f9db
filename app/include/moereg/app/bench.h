// SPDX-License-Identifier: Apache-2.0
// bench.h - time one MoE layer of a given shape on a backend, with synthetic bf16 weights,
// and in the same run transformers' eager per-expert loop in PyTorch on the same weights and
// routing (a separate python process), one dense matmul of the same FLOPs, and the memory
// bandwidth the layer could reach. A backend with device memory (cuda) is timed on
// device-resident inputs and outputs, and PyTorch then runs on the GPU too.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "moereg/abi/moereg_backend.h"
#include "moereg/app/export.h"
#include "moereg/app/result.h"

namespace moereg::app {

struct moe_bench_request {
  std::string shape = "custom";  // named in logs and reports
  std::int64_t experts = 0, hidden = 0, intermediate = 0, top_k = 0, shared_intermediate = 0;
  moereg_routing_params routing{};  // scoring, groups, scaling; the router weights are made here
  std::vector<std::int64_t> tokens;  // token counts T, one row each
  // The experts' storage: "bf16", or "f8_e4m3" (E4M3 with 128x128 block scales, as DeepSeek-V3
  // ships; PyTorch's reference runs the same experts dequantized to bf16).
  std::string weights = "bf16";
  std::string backend = "auto";
  int threads = 0;  // for the backend and PyTorch; 0: every CPU this process may use
  std::vector<std::pair<std::string, std::string>> backend_options;
  std::vector<std::string> plugin_paths;
  double min_seconds = 1;  // time each measurement for at least this long
  std::string work_dir;    // where the weight files go; empty: the temporary directory
  bool reference = true;   // run the PyTorch reference
  std::string python;            // with torch; empty: python3 on PATH, then /usr/bin/python3
  std::string reference_script;  // torch_reference.py; empty: beside the binary
  double reference_max_seconds = 120;  // skip reference rows estimated longer than this (0: no limit)
  std::uint64_t seed = 1;
};

struct moe_bench_row {
  std::int64_t tokens = 0;
  double seconds = 0;       // median of the backend's forward over its rotations
  double weight_bytes = 0;  // per forward, mean over rotations: experts hit (as the backend reads them) and shared expert
  // The forwards cycle over `rotations` inputs routed to different experts, so that the experts
  // read in one cycle (`cycle_bytes`, distinct) outgrow the last-level cache and each forward
  // streams its weights from memory; rotation 0 is what PyTorch runs.
  std::int64_t rotations = 1;
  double cycle_bytes = 0;
  double flops = 0;
  double reference_seconds = NAN, dense_seconds = NAN, dense_gflops = NAN;
  double max_rel_diff = NAN;  // the backend's output against PyTorch's
  std::int64_t reference_runs = 0;
  std::string reference_skipped;  // why the reference did not run this row
};

struct moe_bench_report {
  std::string backend, why, describe;  // describe: the backend's JSON account of itself
  std::string backend_library;         // the file the backend was loaded from (which build ran)
  std::string torch;                   // "2.11.0, 16 threads" when the reference ran
  int threads = 0;
  bool on_device = false;   // timed on device-resident inputs
  double bandwidth = 0;     // bytes/s: host read bandwidth (best pattern), or device copy bandwidth (read + write)
  std::vector<std::pair<std::string, double>> read_patterns;  // host: each read pattern's bytes/s
  std::uint64_t last_level_cache = 0;                          // host: bytes, 0 if unknown
  // host: why the read bandwidth cannot be trusted ("" when it can); then no "of bw" is given.
  std::string bandwidth_doubt;
  std::vector<moe_bench_row> rows;
};

MOEREG_API result<moe_bench_report> bench_moe(const moe_bench_request& request) noexcept;

}  // namespace moereg::app
