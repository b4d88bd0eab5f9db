// SPDX-License-Identifier: Apache-2.0
// family_spec.h - what a family plugin's plugin.yaml declares, parsed and validated.
//
// The YAML says where each canonical piece of an MoE layer lives in each layout (key
// templates, stacking, fusing, transposes), how the other tensors are renamed, which
// tensors pass through, how config.json gives the dimensions, and how the family routes.
// docs/yaml-reference.md documents every key. Specs are made by the family_catalog
// (family_catalog.h), which parses each manifest once and merges `extends` and `variants`;
// every part remembers where it was written, so each problem is reported as
// "file:line:column: what, expected what" at the right line of the right file.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "moereg/base/json.h"
#include "moereg/layout/key_template.h"

namespace moereg {

// Where a part of a spec was written: the manifest, 1-based line and column, and the plugin
// it belongs to (which, through `extends`, need not be the plugin being resolved).
struct source_loc {
  std::string file;
  int line = 0, column = 0;  // 0: not known (a key that was absent)
  std::string plugin;
  // "file:line:column", "file" when the position is not known.
  std::string str() const;
};

// The canonical pieces of one expert (DESIGN.md): gate [I,H], up [I,H], down [H,I].
enum class piece { gate = 0, up = 1, down = 2 };
const char* piece_name(piece p);

// One stored tensor (per layer, or per layer and expert) holding one or more pieces.
struct expert_entry {
  std::string name;            // the YAML key: "gate_up", "down", "gate"
  key_template key;            // with {layer}, and {expert} unless stacked
  std::vector<piece> pieces;   // concatenated along the output (row) axis, in this order
  bool stacked = false;        // the key has no {expert}: axis 0 is the expert index
  bool transpose = false;      // each matrix is stored [in, out] instead of [out, in]
  source_loc at;
};

// A rename between the family's canonical names (those of its reference layout) and a
// layout's names. Both sides are templates with the same placeholders, so it reverses.
struct rename_rule {
  key_template canonical;
  key_template renamed;
  source_loc at;
};

// A tensor whose bytes a hook rewrites in this layout (e.g. Mistral's wq/wk row order).
struct tensor_transform {
  key_template key;  // in this layout's naming
  std::string hook;
  source_loc at;
};

// A tensor this layout stores without one size-1 axis of its canonical shape (llama.cpp's
// ssm_conv1d keeps Qwen3.5's conv1d weight [C, 1, K] as [C, K]). The bytes are the same;
// writing drops the axis, reading puts it back.
struct tensor_squeeze {
  key_template key;  // in this layout's naming
  int axis = 0;      // the canonical tensor's axis that is dropped
  source_loc at;
};

// How quantized checkpoints name a linear weight's stored data and its companions. Each is
// a template over {key}, the name the unquantized weight has ("....gate_proj.weight"), or
// {stem}, that name without a trailing ".weight", followed by a literal suffix:
// "{key}_scale_inv", "{stem}.qweight". Not family branches: data, with the quantizers'
// conventions as defaults (docs/yaml-reference.md, `quantization`).
struct quant_naming {
  std::string weight = "{key}";     // the stored (possibly packed) data
  std::vector<std::string> scale;   // read: the first present; written: the one that was read
  std::string g_idx, zeros, shape;  // optional companions: GPTQ g_idx / qzeros, compressed-tensors weight_shape / weight_zero_point
  source_loc at;
};

// A number read from config.json: the first field present, else the default. A value that
// names fields and gives no default needs one of them in config.json (required_value).
struct config_value {
  std::vector<std::string> fields;  // dotted paths ("text_config.hidden_size")
  std::optional<double> fallback;
  std::string key;                  // the manifest key it was given for: "dims.I", "routing.scaling"
  source_loc at;                    // where that key was written
  bool empty() const { return fields.empty() && !fallback; }
  // "`moe_intermediate_size`", "`a` or `b`", "the default 1" (for messages).
  std::string describe() const;
};

// One canonical tensor that a layout stores as several, cut per head: llama.cpp's deepseek2
// keeps kv_b_proj [heads * (nope + v), rank] as attn_k_b [heads, rank, nope] (each head's first
// `nope` rows, transposed) and attn_v_b [heads, v, rank] (its next `v` rows). Each head's rows
// are the parts' rows in order; a part is stored [heads, rows, cols], or [heads, cols, rows]
// when transposed. A split is not a rename: reading joins the parts into strided views of
// the canonical tensor, writing cuts it (docs/yaml-reference.md, `splits`).
struct split_part {
  key_template key;      // in this layout's naming, same placeholders as the canonical name
  config_value rows;     // rows per head in the canonical tensor
  bool transpose = false;
  source_loc at;
};
struct tensor_split {
  key_template canonical;      // the canonical name
  config_value heads;          // how many heads the rows are cut into
  std::vector<split_part> parts;
  source_loc at;
};

struct layout_spec {
  std::string name;
  std::vector<std::string> aliases;  // other names for exactly this layout
  std::string description;
  std::vector<expert_entry> experts;
  std::vector<rename_rule> renames;  // ordered; first match wins (both directions)
  std::vector<tensor_transform> transforms;
  std::vector<tensor_squeeze> squeezes;    // size-1 axes of canonical tensors this layout drops
  std::vector<tensor_split> splits;        // canonical tensors stored cut per head
  // Canonical tensors this layout does not hold: converting to it leaves them out (a
  // multimodal model's vision tower in a text-only llama.cpp .gguf). Reading is unaffected.
  std::vector<key_template> drops;
  std::string config_file = "config.json";  // a native layout writes e.g. params.json
  std::string write_config_hook;            // hook producing config_file from config.json
  std::string file_stem = "model";          // model.safetensors / consolidated.safetensors
  // Per-expert FP8 scales are written with their size-1 axes dropped, as transformers 5.17's
  // save_pretrained does ([2] rather than [1, 2]); read in either shape. Group scales
  // (int4, mxfp4) keep the shape their format fixes.
  bool squeeze_expert_scales = false;
  std::string container = "safetensors";    // what convert --to writes: safetensors | gguf (file_stem.gguf)
  source_loc at;                            // where it was declared (file, line, plugin)
};

struct moe_layer_rule {
  config_value count;         // decoder layers
  config_value sparse_step;   // MoE iff (L + 1) % step == 0
  std::string dense_layers;   // config path of a list of dense layer indices
  config_value first_dense;   // MoE iff L >= value
  config_value extra;         // layers after `count` (MTP) that hold experts when present
};

struct routing_spec {
  std::string scoring = "softmax";       // softmax | sigmoid
  bool logits_in_f32 = false;
  config_value renormalize;              // boolean: literal or config field
  double renorm_eps = 0;
  config_value scaling;                  // routed scaling factor
  config_value n_group, topk_group;
  std::string group_score = "none";      // none | max | top2_sum
  std::string groups_when_field;         // groups apply only when this config field...
  std::string groups_when_equals;        // ...equals this string
  bool declared = false;                 // the manifest has a `routing` section (moe run needs one)
  source_loc at;
};

// Canonical names of the non-expert parts of one MoE block (moe run needs them).
struct moe_block_spec {
  key_template router, router_bias;
  key_template shared_gate_proj, shared_up_proj, shared_down_proj;
  key_template shared_gate;
};

// One GGUF metadata key and the config.json field it carries (both directions), or a
// constant. Keys are written without the "{arch}." prefix.
struct gguf_metadata_rule {
  std::string key;                   // "expert_count", "attention.head_count"
  std::vector<std::string> config;   // config.json paths: writing takes the first present, reading fills the first
  std::optional<double> value;       // a constant instead (e.g. expert_gating_func)
  std::string type = "u32";          // u32 | i32 | u64 | f32 | f64 | bool | i32_array | bool_array
  // i32_array: the config field is a list of integers, written as `length` INT32 items padded
  // with zeros (llama.cpp's rope.dimension_sections: always 4); read back without the padding.
  std::size_t length = 0;
  // The sum of these config fields instead (llama.cpp's MLA lengths); read back into the
  // first field that is absent, as the value minus the others.
  std::vector<std::string> sum;
  // The product of these config fields instead (llama.cpp's ssm.inner_size = value head dim x
  // value heads; rope.dimension_count = head_dim x partial_rotary_factor); written only when it
  // is an integer, read back into the one field that is absent as the value over the others.
  std::vector<std::string> product;
  // bool_array: the config field is a list of these two strings (false, true), written as BOOL
  // items (llama.cpp's attention.recurrent_layers from layer_types); read back as the strings.
  std::vector<std::string> strings;
  // i32_array: written when the config has none of `config` (llama.cpp's converter writes
  // Qwen3.5's default M-RoPE sections when the config has none).
  std::vector<std::int64_t> array_default;
  // ...which must fit half of this (already written) key's value: llama.cpp asserts that the
  // M-RoPE sections sum to at most the rotary pairs. A default that does not fit is written as
  // [that half, 0, ...]: every pair in the first section, which for text positions (the same
  // in every section) is the same rotation.
  std::string default_fits;
  // Written as this when the config lacks the field (or it is null: q_lora_rank); read back
  // as null when equal.
  std::optional<double> absent;
  // Read from a file without the key as this: what llama.cpp itself uses then (qwen3moe
  // always renormalizes its top-k weights, so its norm_topk_prob reads as true).
  std::optional<double> missing;
  // Written only when the file has a tensor of this (GGUF) name: nextn only with MTP weights.
  std::optional<key_template> with_tensor;
  // Written only when these config.json fields hold these strings (DeepSeek-V2's expert groups
  // only with topk_method group_limited_greedy: llama.cpp limits groups whenever it sees them).
  std::map<std::string, std::string> when_config;
  source_loc at;
};

// How the family maps onto GGUF: the architecture name, which model_type a file of that
// architecture is, and the metadata written from (and read back into) config.json.
struct gguf_spec {
  std::string architecture;  // general.architecture; empty: the family has no GGUF mapping
  // Which model_type a .gguf of this architecture is: the first rule whose `when` metadata
  // (keys without the arch prefix) all hold. Empty: the plugin's first model_type.
  struct model_type_rule {
    std::string model_type;
    std::map<std::string, double> when;
    // ...and the file has a tensor of this name (deepseek2: V3's exp_probs_b, for files whose
    // converter wrote no expert_gating_func).
    std::optional<key_template> with_tensor;
  };
  std::vector<model_type_rule> model_types;
  std::vector<gguf_metadata_rule> metadata;  // those for this spec's model_type
  // Tensors (GGUF names) written F32 from bf16/f16 besides those llama.cpp's converter always
  // widens (1-D tensors, *_norm.weight, names not ending in .weight): its routers.
  std::vector<key_template> f32_tensors;
  // llama.cpp's tokenizer.ggml.pre for this model_type: the name under which llama.cpp knows the
  // pre-tokenizer (split regexes) of the family's byte-level BPE tokenizer.json ("qwen2",
  // "deepseek-v3"); convert_hf_to_gguf.py finds it by hashing a test text's tokens. Empty: not
  // declared, so a .gguf written from such a tokenizer.json gets no tokenizer (docs/gguf.md).
  std::string tokenizer_pre;
  source_loc at;
};

struct family_spec {
  std::string name;              // the plugin's name
  std::string model_type;        // the model_type this spec was resolved for
  std::string version;
  int api_version = 0;
  std::string description;
  std::string manifest_path;
  std::vector<std::string> model_types;
  std::string library;
  std::vector<std::string> hooks;  // this plugin's own (its library's)
  // Which plugin's library serves each hook the spec uses or lists: the plugin whose
  // manifest declared the part that names it (a layout inherited through `extends` keeps
  // its plugin's hooks). The one rule for the CLI, the executor and `plugins show`.
  std::map<std::string, std::string> hook_plugins;
  std::string native_config_file;  // e.g. params.json, read by native_config_hook
  std::string native_config_hook;
  std::map<std::string, config_value> dims;  // E, H, I, K, ...
  moe_layer_rule moe_layers;
  moe_block_spec moe_block;
  std::vector<key_template> passthrough;  // canonical names outside the experts
  bool passthrough_declared = false;      // the manifest has the key (an empty list is declared)
  std::vector<layout_spec> layouts;
  std::string reference_layout = "hf";  // whose names are the canonical ones
  routing_spec routing;
  // Companion naming per quantization scheme: "fp8", "mxfp4", "gptq", "compressed". The
  // parser fills the defaults; plugin.yaml's `quantization` replaces a scheme's entry.
  std::map<std::string, quant_naming> quantization;
  gguf_spec gguf;

  const layout_spec* find_layout(const std::string& name) const;  // by name or alias
  std::vector<std::string> layout_names() const;
  // The plugin whose library serves hook; nullptr when no plugin of the spec lists it.
  const std::string* plugin_serving(const std::string& hook) const;
};

// Parse one self-contained manifest (no `extends` to other plugins). Throws moereg::error
// listing every problem ("file:line:column: ...", one per line). For tests and tools; the
// CLI resolves through a family_catalog.
family_spec parse_family_spec(const YAML::Node& root, const std::string& manifest_path, const std::string& model_type);

// Resolve a config_value against config.json; nullopt when absent and without default.
std::optional<double> resolve_value(const config_value& v, const json::value& config);

// The value for config, or `builtin` when the manifest did not give the key at all. Throws
// moereg::error naming the config field and the manifest line when the manifest names
// fields without a default and config.json has none of them (or a non-number there).
// A boolean field reads as 1 or 0 (flags like norm_topk_prob), except with `count`: a size or
// a count (hidden_size: true was read as H = 1) must be a JSON number.
double required_value(const config_value& v, const json::value& config, const std::string& config_path, double builtin,
                      bool count = false);

}  // namespace moereg
