// SPDX-License-Identifier: Apache-2.0
// moe.h - run the MoE block of one decoder layer of a checkpoint, in whatever layout it is
// stored (no conversion step), routed as its family declares, on a fused-MoE backend.
//
// The backend is the one named, or with "auto" the installed backend with the best probe
// score that accepts the layer: a backend that refuses it (a GPU backend without FP8 experts,
// say) hands over to the next best, and `why` says so.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "moereg/app/export.h"
#include "moereg/app/result.h"

namespace moereg::app {

struct moe_input {
  const void* data = nullptr;  // [tokens, hidden], row-major, contiguous
  std::string dtype = "F32";   // "F32" or "BF16"
  std::int64_t tokens = 0, hidden = 0;
  std::string what = "input";  // named in messages ("in.safetensors: 'input'")
};

struct moe_run_request {
  std::string checkpoint;
  std::string family, layout;  // empty: from the config / detected
  int layer = 0;
  moe_input input;
  std::string backend = "auto";  // "cpu", "cuda", another installed backend, or "auto"
  int threads = 0;               // CPU threads; 0: every CPU this process may use
  std::vector<std::pair<std::string, std::string>> backend_options;  // tuning, docs/backends.md
  std::vector<std::string> plugin_paths;
  // Where the caller will write the result, and the file the input came from (both optional):
  // run_moe refuses, before any work, an output that is the input file, a file of the
  // checkpoint, or a new .safetensors/.gguf inside a checkpoint directory (which the next read
  // of that directory would take for a shard). It writes nothing itself.
  std::string output, input_file;
};

struct moe_run_result {
  std::string backend;   // the backend that ran
  std::string why;       // "asked for with --backend cpu", "auto: best probe score 80 of ..."
  std::string describe;  // the backend's own account of its kernels and any copy it made (JSON)
  std::string family, layout, layer_describe;
  int layer = 0;
  std::int64_t tokens = 0, hidden = 0, experts = 0, top_k = 0;
  std::uint64_t packed_bytes = 0;
  std::vector<float> output;         // [tokens, hidden]
  std::vector<float> router_logits;  // [tokens, experts]
  std::vector<std::int64_t> topk_ids;  // [tokens, top_k]
  std::vector<float> topk_weights;     // [tokens, top_k]
  double load_ms = 0, create_ms = 0, forward_ms = 0;
};

MOEREG_API result<moe_run_result> run_moe(const moe_run_request& request) noexcept;

}  // namespace moereg::app
