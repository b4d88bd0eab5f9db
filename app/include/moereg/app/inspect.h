// SPDX-License-Identifier: Apache-2.0
// inspect.h - summarise a checkpoint from its headers alone: files, tensor count and bytes per
// dtype, the tensors folded by layer and expert number, a GGUF model's metadata, and, when a
// plugin recognises it, its family, layout and dimensions.
//
//   auto r = moereg::app::inspect({"Qwen3-30B-A3B"});
//   if (!r) { std::cerr << r.error().message << "\n"; return 1; }
//   for (const auto& g : r.value().groups)       // "model.layers.{0..47}.mlp.experts.{0..127}.up_proj.weight"
//     std::cout << g.pattern << " x" << g.count << "\n";
//
// Unlike open_model, a checkpoint no plugin claims (or one without config.json) is still
// summarised: `family` is then empty and `family_error` says why.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moereg/app/export.h"
#include "moereg/app/result.h"

namespace moereg::app {

struct inspect_request {
  std::string path;                       // a checkpoint directory, a .safetensors or a .gguf file
  std::vector<std::string> plugin_paths;  // searched first, in order (as open_request's)
};

// Tensors whose names differ only in layer/expert numbers, with one dtype and shape.
struct tensor_group {
  std::string pattern;  // "model.layers.{0..47}.mlp.experts.{0..127}.up_proj.weight"
  std::string dtype;    // "BF16", "Q4_K", ...
  std::vector<std::int64_t> shape;
  std::uint64_t count = 0, bytes = 0;
};

struct dtype_total {
  std::string dtype;
  std::uint64_t tensors = 0, bytes = 0;
};

// One GGUF metadata key. Values come from the file: `text` has control bytes escaped and long
// strings cut; arrays longer than 16 items are summarised in both forms.
struct metadata_entry {
  std::string key;
  std::string json;  // the value as JSON: a scalar, a list, or {"type": "array", "count": N, "first": [...]}
  std::string text;  // one line: a quoted string, a number, or [TYPE x N]
};

struct checkpoint_report {
  std::string path;
  std::size_t files = 0;      // safetensors shards, or 1 for a GGUF file
  bool has_index = false;     // model.safetensors.index.json present
  std::string config_path;    // empty when there is none (a GGUF model's is made from its metadata)
  std::uint64_t tensor_count = 0, total_bytes = 0, header_bytes = 0;
  std::vector<dtype_total> dtypes;  // by name
  std::vector<tensor_group> groups;  // in file order of their first tensor
  std::vector<metadata_entry> gguf_metadata;  // in file order; empty for safetensors
  // The family that claims it; all empty, and family_error set, when none does.
  std::string family, model_type, layout, family_error;
  // Set when a family claims it but the checkpoint does not fit that layout (shapes against
  // config.json, missing or unclaimed tensors): what `convert` and `moe run` would refuse.
  std::string layout_error;
  std::int64_t experts = 0, hidden = 0, intermediate = 0, experts_per_token = 0;
  std::vector<int> moe_layers;
  std::string dims;  // "E=128 H=2048 I=768 K=8, 48 MoE layers"
  std::string json;  // the whole report as JSON, as `moereg inspect --json` prints it
};

MOEREG_API result<checkpoint_report> inspect(const inspect_request& request) noexcept;

}  // namespace moereg::app
