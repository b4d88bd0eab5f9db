// SPDX-License-Identifier: Apache-2.0
// expert_companions.h (internal) - decoding the companions of quantized weights: the scale
// tensors (and GPTQ / compressed-tensors extras) of each expert entry, cut into per-piece
// scale views at block granularity, and the links between a quantized pass-through weight
// and its companions.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "moereg/plan/decoded_checkpoint.h"

namespace moereg::detail {

using problem_sink = std::function<void(std::string)>;

// Where an entry's pieces sit in its fused [rows_total, cols] matrix (logical elements).
struct entry_geometry {
  std::vector<std::int64_t> row_offsets, piece_rows;
  std::int64_t rows_total = 0, cols = 0;
};

// The companion keys of one expert entry, and the companion tensors found for it.
struct entry_companions {
  std::vector<key_template> scale;  // one per scale naming, in order
  key_template g_idx, zeros, shape;
  // [layer][expert, or -1 when stacked] -> tensor (and for scales, which naming matched)
  std::map<int, std::map<int, std::pair<const checkpoint::entry*, std::size_t>>> scales;
  std::map<int, std::map<int, const checkpoint::entry*>> g_idx_found, zeros_found, shape_found;
};

// The checkpoint's quantization: quantization_config, else fp8 when the first expert tensor
// of `layout` is F8_E4M3 (a checkpoint saved without its config), else none.
quant_format checkpoint_quant_format(const checkpoint& ckpt, const family_spec& spec, const layout_spec& layout,
                                     const model_dims& dims);

entry_companions companion_keys(const expert_entry& e, const quant_format& q);

// Claims `t` when it is one of the entry's companions; true if claimed.
bool claim_companion(entry_companions& c, const expert_entry& e, const checkpoint::entry& t);

// The stored expert dtype must be the scheme's.
void check_expert_dtype(const quant_format& q, dtype t, const std::string& config_where, const problem_sink& problem);

// Sets role / quant_naming / scale of a pass-through tensor that is a quantized weight or a
// companion of one (its data tensor exists in ckpt).
void link_quantized_passthrough(const checkpoint& ckpt, const quant_format& q, passthrough_tensor& p);

// Scale views (and checks of the other companions) of the stored tensor of `e` for layer
// `layer`, expert `expert` (ignored when stacked): fills out.expert_scales. `scales_seen`
// carries across calls so every expert scale must share one dtype and naming.
void decode_companions(decoded_checkpoint& out, const entry_companions& c, const expert_entry& e, const entry_geometry& g,
                       int layer, int expert, const std::string& data_name, bool& scales_seen, const problem_sink& problem);

}  // namespace moereg::detail
