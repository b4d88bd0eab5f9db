// SPDX-License-Identifier: Apache-2.0
// read_gguf_moe_dims: E, H, I and top-k of a GGUF MoE model (declared in gguf_file.h).
#include <string>

#include "moereg/base/error.h"
#include "moereg/gguf/gguf_file.h"

namespace moereg {

namespace {

// Sizes seen in the expert tensors of the first layer that has them.
struct shape_dims {
  std::optional<std::uint64_t> experts, hidden, intermediate;
  std::string from;  // the tensor they were read from
};

shape_dims dims_from_shapes(const gguf_file& f) {
  shape_dims d;
  for (const auto& t : f.tensors()) {
    const std::string& n = t.name;
    if (n.rfind("blk.", 0) != 0 || t.ne.size() != 3) continue;
    bool gate_or_up = n.ends_with(".ffn_gate_exps.weight") || n.ends_with(".ffn_up_exps.weight");
    bool fused = n.ends_with(".ffn_gate_up_exps.weight");
    if (!gate_or_up && !fused) continue;
    // ne = {H, I, E} (or {H, 2I, E} fused): GGUF lists the innermost dimension first.
    d.hidden = t.ne[0];
    d.intermediate = fused ? t.ne[1] / 2 : t.ne[1];
    d.experts = t.ne[2];
    d.from = n;
    break;
  }
  return d;
}

void reconcile(const gguf_file& f, const std::string& key, std::optional<std::uint64_t>& meta,
               const std::optional<std::uint64_t>& shape, const std::string& from) {
  if (meta && shape && *meta != *shape)
    throw error(f.path() + ": gguf metadata '" + key + "' = " + std::to_string(*meta) + " disagrees with tensor '" + from +
                "', which implies " + std::to_string(*shape));
  if (!meta) meta = shape;
}

}  // namespace

gguf_moe_dims read_gguf_moe_dims(const gguf_file& f) {
  gguf_moe_dims d;
  d.arch = f.get_string("general.architecture").value_or("");
  std::string p = d.arch + ".";
  if (!d.arch.empty()) {
    d.experts = f.get_uint(p + "expert_count");
    d.top_k = f.get_uint(p + "expert_used_count");
    d.hidden = f.get_uint(p + "embedding_length");
    d.intermediate = f.get_uint(p + "expert_feed_forward_length");
  }
  shape_dims s = dims_from_shapes(f);
  reconcile(f, p + "expert_count", d.experts, s.experts, s.from);
  reconcile(f, p + "embedding_length", d.hidden, s.hidden, s.from);
  reconcile(f, p + "expert_feed_forward_length", d.intermediate, s.intermediate, s.from);
  return d;
}

}  // namespace moereg
