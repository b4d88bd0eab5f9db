// SPDX-License-Identifier: Apache-2.0
// summary.h - a checkpoint summarised so that 20,000 keys fit on a screen.
//
// Tensor names are folded on their all-digit components: every
// model.layers.N.mlp.experts.M.gate_proj.weight with the same dtype and shape becomes one
// row `model.layers.{0..47}.mlp.experts.{0..127}.gate_proj.weight BF16 [768, 2048] x6144`.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint.h"

namespace moereg {

struct folded_group {
  std::string pattern;  // name with {a..b} / {a,b} for folded components
  dtype type;
  std::string type_name;               // "BF16", or a ggml block type ("Q4_K")
  std::vector<std::int64_t> shape;     // in elements (ggml blocks: not bytes)
  std::uint64_t count = 0;
  std::uint64_t bytes = 0;
};

struct checkpoint_summary {
  std::string path;
  std::size_t files = 0;
  bool has_index = false;
  std::uint64_t tensor_count = 0;
  std::uint64_t total_bytes = 0;  // tensor data only
  std::uint64_t header_bytes = 0;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> dtypes;  // name -> (count, bytes)
  std::vector<folded_group> groups;
};

checkpoint_summary summarize(const checkpoint& ckpt);

// Fold names alone (exposed for tests).
std::vector<folded_group> fold_tensor_names(const std::vector<tensor_info>& tensors);

// "{0..47}", "{1,3}", "{0..2,5}"
std::string format_number_set(const std::vector<std::int64_t>& sorted_unique);

// "57.0 GB": format_bytes (moereg/base/units.h), decimal units as everywhere moereg prints.
std::string human_bytes(std::uint64_t bytes);

json::value summary_to_json(const checkpoint_summary& s);

}  // namespace moereg
