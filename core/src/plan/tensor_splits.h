// SPDX-License-Identifier: Apache-2.0
// tensor_splits.h - a layout's `splits` (family_spec.h: one canonical tensor stored as several,
// cut per head, like llama.cpp's deepseek2 attn_k_b / attn_v_b): the geometry from config.json,
// joining stored parts into views of the canonical tensor when decoding, and cutting a canonical
// tensor into the parts when planning. In-tree header for decoded_checkpoint.cpp,
// conversion_plan.cpp and compare_decoded.cpp.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "moereg/plan/conversion_plan.h"

namespace moereg::detail {

// A split resolved against config.json: `heads` heads of per_head rows, part i holding rows
// [offset[i], offset[i] + rows[i]) of each head.
struct split_geometry {
  std::int64_t heads = 0, per_head = 0;
  std::vector<std::int64_t> rows, offset;
};

// Throws moereg::error naming the config.json field (and the manifest line) when a count is
// missing or not a positive integer.
split_geometry resolve_split(const tensor_split& s, const json::value& config, const std::string& config_path);

// The split of `layout` a stored name is a part of: split and part index, and the canonical name.
struct split_part_match {
  std::size_t split = 0, part = 0;
  std::string canonical;
};
std::optional<split_part_match> match_split_part(const layout_spec& layout, const std::string& stored);

// The split of `layout` that cuts a canonical name, with its captures; nullptr when none does.
const tensor_split* split_cutting(const layout_spec& layout, const std::string& canonical, captures* c);

// Joins the stored parts of one split tensor (in part order; nullptr for a missing one) into a
// pass-through tensor whose `joined` views give each head's rows in canonical order. Returns
// nullopt after reporting every problem (missing part, shape, dtype, ggml blocks) to `problem`.
std::optional<passthrough_tensor> join_split(const tensor_split& s, const split_geometry& g, const std::string& canonical,
                                             const std::vector<const checkpoint::entry*>& parts,
                                             const std::function<void(std::string)>& problem);

// The outputs of one pass-through tensor `p` that is joined from parts, or that `target` cuts
// into parts (or both): assembled from views like expert slots, one slot per head. `decode_to`:
// --dtype from a .gguf (each value decoded as ggml's to_float, written as that dtype).
std::vector<output_tensor> split_outputs(const decoded_checkpoint& src, const layout_spec& target, const passthrough_tensor& p,
                                         std::optional<dtype> decode_to);

// Whether `p` goes through split_outputs for `target`.
bool takes_split_path(const layout_spec& target, const passthrough_tensor& p);

}  // namespace moereg::detail
