// SPDX-License-Identifier: Apache-2.0
#include "moereg/gguf/gguf_output.h"

#include <map>

#include "moereg/base/error.h"

namespace moereg {

gguf_tensor_spec gguf_spec_of(const tensor_spec& s) {
  gguf_tensor_spec g;
  g.name = s.name;
  g.shape = s.shape;
  if (s.shape.empty() || s.shape.size() > gguf_max_dims)
    throw error("tensor '" + s.name + "': " + std::to_string(s.shape.size()) + " dimensions " + shape_string(s.shape) +
                ", but a GGUF tensor has 1 to " + std::to_string(gguf_max_dims));
  if (s.ggml_blocks) {
    auto tr = ggml_traits(*s.ggml_blocks);
    if (!tr) throw error("tensor '" + s.name + "': unknown ggml type " + std::to_string(*s.ggml_blocks));
    g.type = tr->type;
    g.shape.back() = g.shape.back() / tr->type_size * tr->block_size;  // bytes -> elements
    return g;
  }
  auto t = ggml_type_for(s.type);
  if (!t)
    throw error("tensor '" + s.name + "': dtype " + std::string(dtype_name(s.type)) +
                " has no GGUF element type (GGUF holds F32, F16, BF16, F64, I8, I16, I32, I64 and ggml blocks)");
  g.type = *t;
  return g;
}

std::vector<std::string> gguf_output_problems(const std::vector<tensor_spec>& specs) {
  std::vector<std::string> out;
  // Tensors of a dtype GGUF cannot hold, one line per dtype (an FP8 checkpoint has hundreds).
  std::map<std::string, std::vector<std::string>> no_element_type;
  for (const auto& s : specs) {
    if (!s.ggml_blocks && !s.shape.empty() && s.shape.size() <= gguf_max_dims && !ggml_type_for(s.type)) {
      no_element_type[std::string(dtype_name(s.type))].push_back(s.name);
      continue;
    }
    try {
      gguf_spec_of(s);
    } catch (const error& e) {
      out.push_back(e.what());
    }
  }
  for (const auto& [type, names] : no_element_type) {
    std::string list;
    for (std::size_t i = 0; i < names.size() && i < 3; ++i) list += (i ? ", " : "") + names[i];
    if (names.size() > 3) list += ", ... (" + std::to_string(names.size()) + " in all)";
    out.push_back(std::to_string(names.size()) + " tensor" + (names.size() > 1 ? "s" : "") + " of dtype " + type + " (" + list +
                  "): GGUF has no such element type (it holds F32, F16, BF16, F64, I8, I16, I32, I64 and ggml blocks)" +
                  (type == "F8_E4M3" || type == "F8_E5M2" ? "; convert with --dtype bf16 to write them as BF16" : ""));
  }
  return out;
}

std::vector<shard_plan> plan_gguf_file(std::vector<tensor_spec> specs, const std::string& stem) {
  shard_plan p;
  p.file_name = stem + ".gguf";
  for (const auto& s : specs) p.bytes += s.nbytes();
  p.tensors = std::move(specs);
  return {std::move(p)};
}

sink_factory gguf_sink_factory(gguf_metadata metadata) {
  return [metadata = std::move(metadata)](const std::string& path, const shard_plan& shard,
                                          const std::map<std::string, std::string>&) -> std::unique_ptr<tensor_sink> {
    std::vector<gguf_tensor_spec> specs;
    specs.reserve(shard.tensors.size());
    for (const auto& t : shard.tensors) specs.push_back(gguf_spec_of(t));
    return std::make_unique<gguf_writer>(path, metadata, specs);
  };
}

}  // namespace moereg
