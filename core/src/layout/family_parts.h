// SPDX-License-Identifier: Apache-2.0
// family_parts.h - the catalog's private form of a manifest: parsed once, each top-level
// key optional and remembering where it was written, so that `extends` and `variants` merge
// parsed values (never YAML nodes, whose copies lose their positions) and every problem
// found after the merge still points at the line of the file that wrote it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "moereg/layout/family_spec.h"

namespace moereg::detail {

template <class T>
struct part_field {
  bool set = false;
  source_loc at;  // the key
  T value{};
};

struct gguf_part {
  gguf_spec spec;
  std::vector<std::string> metadata_for;  // per metadata rule: the model_type it is limited to, or ""
  // tokenizer_pre entries in order: (name, the model_type it is limited to or ""); the first
  // that applies is the spec's tokenizer_pre.
  std::vector<std::pair<std::string, std::string>> tokenizer_pre_for;
};

// One map of engine keys: a manifest's top level, or one of its variants.
struct family_part {
  source_loc at;
  part_field<std::string> extends;
  part_field<std::map<std::string, config_value>> dims;
  part_field<moe_layer_rule> moe_layers;
  part_field<moe_block_spec> moe_block;
  part_field<std::vector<key_template>> passthrough;
  part_field<std::vector<layout_spec>> layouts;  // merged by name, not replaced
  part_field<std::string> reference_layout;
  part_field<routing_spec> routing;
  part_field<std::map<std::string, quant_naming>> quantization;  // per scheme, over the defaults
  part_field<gguf_part> gguf;
};

// One plugin.yaml: its identity, its own declarations and its variants.
struct manifest_parts {
  std::string path, name, version, description, library, library_sha256;
  int api_version = 0;
  std::vector<std::string> model_types, hooks;
  std::string native_config_file, native_config_hook;
  source_loc root_at, name_at, hooks_at, library_at, native_config_at;
  family_part base;
  std::vector<std::pair<std::string, family_part>> variants;  // in file order
  std::vector<std::string> errors;                            // parse problems, "file:line:col: ..."

  const family_part* variant(const std::string& model_type) const;
};

manifest_parts parse_manifest(const YAML::Node& root, const std::string& path);

// `over`'s keys replace `base`'s; layouts of the same name are replaced in place, new ones
// appended. `extends` is not carried (the catalog consumes it).
void overlay(family_part& base, const family_part& over);

// The spec of `self` resolved for model_type from its merged part; every problem appended.
// `owners` finds the manifest of a plugin by name (for hooks of inherited layouts).
family_spec finish_spec(const family_part& merged, const manifest_parts& self, const std::string& model_type,
                        const std::map<std::string, const manifest_parts*>& owners, std::vector<std::string>& problems);

}  // namespace moereg::detail
