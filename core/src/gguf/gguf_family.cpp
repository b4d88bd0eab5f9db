// SPDX-License-Identifier: Apache-2.0
#include "moereg/gguf/gguf_family.h"

#include <cmath>
#include <limits>
#include <map>

#include "moereg/base/error.h"
#include "moereg/gguf/gguf_model_metadata.h"
#include "moereg/gguf/gguf_tokenizer.h"

namespace moereg {

namespace {

// Set a dotted path ("text_config.hidden_size") in a JSON object, creating objects on the way.
void set_path(json::value& root, const std::string& dotted, json::value v) {
  auto dot = dotted.find('.');
  if (dot == std::string::npos) {
    root.set(dotted, std::move(v));
    return;
  }
  std::string head = dotted.substr(0, dot);
  const json::value* sub = root.find(head);
  json::value child = sub && sub->is_object() ? *sub : json::value(json::object{});
  set_path(child, dotted.substr(dot + 1), std::move(v));
  root.set(head, std::move(child));
}

bool has_any(const json::value& config, const std::vector<std::string>& fields) {
  for (const auto& f : fields)
    if (const json::value* v = config.find_path(f); v && !v->is_null()) return true;
  return false;
}

json::value from_gguf(const gguf_value& v, const std::string& type) {
  if (type == "bool") return json::value(v.type() == gguf_type::boolean ? v.as_bool() : v.as_u64() != 0);
  if (v.is_float()) return json::value(v.as_f64());
  if (v.is_signed()) return json::value(v.as_i64());
  if (v.type() == gguf_type::boolean) return json::value(v.as_bool());
  return json::value(v.as_u64());
}

}  // namespace

std::optional<std::string> gguf_model_type(const gguf_file& f, const gguf_spec& g, const std::vector<std::string>& claimed) {
  if (g.architecture.empty() || f.get_string("general.architecture") != g.architecture) return std::nullopt;
  if (g.model_types.empty()) return claimed.empty() ? std::nullopt : std::optional<std::string>(claimed.front());
  for (const auto& rule : g.model_types) {
    bool holds = true;
    for (const auto& [key, want] : rule.when) {
      const gguf_value* v = f.find(g.architecture + "." + key);
      double got = !v ? std::numeric_limits<double>::quiet_NaN()
                      : v->is_float() ? v->as_f64() : v->is_signed() ? static_cast<double>(v->as_i64()) : static_cast<double>(v->as_u64());
      holds = holds && got == want;
    }
    if (holds && rule.with_tensor) {
      bool found = false;
      for (const auto& t : f.tensors()) found = found || rule.with_tensor->match(t.name).has_value();
      holds = found;
    }
    if (holds) return rule.model_type;
  }
  return std::nullopt;
}

json::value gguf_config(const gguf_file& f, const family_spec& spec) {
  check_gguf_model_metadata(f.metadata(), spec.gguf.architecture, f.path(),
                            [](const std::string& key) { return "gguf metadata '" + key + "'"; });
  json::value c(json::object{});
  c.set("model_type", json::value(spec.model_type));
  const std::string prefix = spec.gguf.architecture + ".";
  auto number = [&](const gguf_metadata_rule& r) -> const gguf_value* {
    const gguf_value* v = f.find(prefix + r.key);
    if (v && (v->type() == gguf_type::string || v->type() == gguf_type::array))
      throw error(f.path() + ": gguf metadata '" + prefix + r.key + "': expected a number (" + r.type + "), found " +
                  gguf_type_name(static_cast<std::uint32_t>(v->type())));
    return v;
  };
  for (const auto& r : spec.gguf.metadata) {
    if (r.config.empty() || has_any(c, r.config)) continue;
    if (r.type == "i32_array") {  // rope.dimension_sections: the list without its zero padding
      const gguf_value* v = f.find(prefix + r.key);
      if (!v) continue;
      if (v->type() != gguf_type::array || v->element_type() == gguf_type::string || v->element_type() == gguf_type::f32 ||
          v->element_type() == gguf_type::f64 || v->element_type() == gguf_type::boolean)
        throw error(f.path() + ": gguf metadata '" + prefix + r.key + "': expected an array of integers");
      json::array items;
      for (const gguf_value& x : v->items()) items.emplace_back(x.is_signed() ? x.as_i64() : static_cast<std::int64_t>(x.as_u64()));
      while (!items.empty() && items.back().as_int() == 0) items.pop_back();
      set_path(c, r.config.front(), json::value(std::move(items)));
      continue;
    }
    if (r.type == "bool_array") {  // attention.recurrent_layers -> layer_types: the rule's strings
      const gguf_value* v = f.find(prefix + r.key);
      if (!v) continue;
      if (v->type() != gguf_type::array || v->element_type() != gguf_type::boolean)
        throw error(f.path() + ": gguf metadata '" + prefix + r.key + "': expected an array of BOOL");
      json::array items;
      for (const gguf_value& x : v->items()) items.emplace_back(r.strings[x.as_bool() ? 1 : 0]);
      set_path(c, r.config.front(), json::value(std::move(items)));
      continue;
    }
    if (const gguf_value* v = number(r)) {
      json::value j = from_gguf(*v, r.type);
      if (r.absent && j.is_number() && j.as_double() == *r.absent) j = json::value(nullptr);
      set_path(c, r.config.front(), std::move(j));
    } else if (r.missing) {
      set_path(c, r.config.front(), r.type == "bool" ? json::value(*r.missing != 0) : json::value(*r.missing));
    }
  }
  // The vocabulary size, which llama.cpp's converter does not write for a file without a
  // tokenizer, from the embedding's rows (transformers sizes the embedding from it).
  for (const auto& r : spec.gguf.metadata) {
    if (r.key != "vocab_size" || r.config.empty() || has_any(c, r.config)) continue;
    if (const gguf_tensor* t = f.find_tensor("token_embd.weight"); t && t->shape.size() == 2)
      set_path(c, r.config.front(), json::value(static_cast<std::uint64_t>(t->shape[0])));
  }
  // A sum gives back its one missing field (key_length_mla - rope dims = qk_nope_head_dim).
  for (const auto& r : spec.gguf.metadata) {
    if (r.sum.empty()) continue;
    const gguf_value* v = number(r);
    if (!v) continue;
    std::string missing;
    double rest = from_gguf(*v, r.type).as_double();
    int n_missing = 0;
    for (const auto& field : r.sum) {
      const json::value* x = c.find_path(field);
      if (x && x->is_number()) rest -= x->as_double();
      else missing = field, ++n_missing;
    }
    if (n_missing == 1) set_path(c, missing, json::value(static_cast<std::int64_t>(rest)));
  }
  // A product gives back its one missing field the same way (rope.dimension_count / head_dim
  // = partial_rotary_factor): an integer when the quotient is one.
  for (const auto& r : spec.gguf.metadata) {
    if (r.product.empty()) continue;
    const gguf_value* v = number(r);
    if (!v) continue;
    std::string missing;
    double rest = from_gguf(*v, r.type).as_double();
    int n_missing = 0;
    for (const auto& field : r.product) {
      const json::value* x = c.find_path(field);
      if (x && x->is_number() && x->as_double() != 0) rest /= x->as_double();
      else missing = field, ++n_missing;
    }
    if (n_missing != 1 || !std::isfinite(rest)) continue;
    if (std::floor(rest) == rest && std::fabs(rest) < 9.0e15) set_path(c, missing, json::value(static_cast<std::int64_t>(rest)));
    else set_path(c, missing, json::value(rest));
  }
  // The weights' dtype, as transformers names it, from llama.cpp's file type (all/mostly F32,
  // F16, BF16): a bf16 model's F32 norms and routers are then read back as BF16.
  if (const gguf_value* ft = f.find("general.file_type"); ft && !ft->is_float() && ft->type() != gguf_type::string &&
                                                           ft->type() != gguf_type::array) {
    const std::uint64_t t = ft->as_u64();
    if (t == 32) c.set("dtype", json::value("bfloat16"));
    else if (t == 1) c.set("dtype", json::value("float16"));
    else if (t == 0) c.set("dtype", json::value("float32"));
  }
  // Sizes the metadata lacks come from the expert tensors; disagreements are errors.
  gguf_moe_dims d = read_gguf_moe_dims(f);
  auto fill = [&](const char* sym, const std::optional<std::uint64_t>& v) {
    auto it = spec.dims.find(sym);
    if (it == spec.dims.end() || it->second.fields.empty() || has_any(c, it->second.fields) || !v) return;
    set_path(c, it->second.fields.front(), json::value(*v));
  };
  fill("E", d.experts);
  fill("H", d.hidden);
  fill("I", d.intermediate);
  fill("K", d.top_k);
  if (spec.dims.count("K") && !has_any(c, spec.dims.at("K").fields))
    throw error(f.path() + ": gguf metadata has no '" + prefix + "expert_used_count' (experts per token), which no tensor shape gives");
  if (!spec.moe_layers.count.fields.empty() && !has_any(c, spec.moe_layers.count.fields)) {
    long blocks = -1;
    for (const auto& t : f.tensors())
      if (t.name.rfind("blk.", 0) == 0) blocks = std::max(blocks, std::strtol(t.name.c_str() + 4, nullptr, 10));
    if (blocks >= 0) set_path(c, spec.moe_layers.count.fields.front(), json::value(static_cast<std::int64_t>(blocks + 1)));
  }
  return c;
}

namespace {

// llama.cpp's llama_ftype for the type holding most of a file's bytes (LLAMA_FTYPE_MOSTLY_*).
std::uint32_t llama_file_type(const std::vector<tensor_spec>& tensors) {
  std::map<std::uint32_t, std::uint64_t> bytes;  // ggml type -> bytes in 2-D+ tensors
  for (const auto& t : tensors) {
    if (t.shape.size() < 2) continue;
    std::optional<ggml_type> g = t.ggml_blocks ? std::optional<ggml_type>(static_cast<ggml_type>(*t.ggml_blocks)) : ggml_type_for(t.type);
    if (g) bytes[static_cast<std::uint32_t>(*g)] += t.nbytes();
  }
  std::uint32_t most = static_cast<std::uint32_t>(ggml_type::BF16);
  std::uint64_t best = 0;
  for (const auto& [g, b] : bytes)
    if (b > best) best = b, most = g;
  // ggml_type -> llama_ftype (llama.h): the plain and _M variants.
  static const std::map<std::uint32_t, std::uint32_t> ftype = {
      {0, 0}, {1, 1}, {2, 2}, {3, 3}, {8, 7}, {6, 8}, {7, 9}, {10, 10}, {11, 12}, {12, 15}, {13, 17}, {14, 18},
      {16, 19}, {17, 20}, {18, 23}, {19, 24}, {20, 25}, {21, 26}, {22, 28}, {23, 30}, {30, 32}, {29, 31}, {34, 36},
      {35, 37}, {39, 38}};
  auto it = ftype.find(most);
  return it == ftype.end() ? 32 : it->second;
}

// An i32_array entry from its config.json list, padded with zeros to its length; nullopt when
// the config has none of its fields.
std::optional<gguf_value> array_metadata(const gguf_metadata_rule& r, const json::value& config, const std::string& config_path,
                                         const std::string& prefix, std::optional<std::uint64_t> fits) {
  for (const auto& field : r.config) {
    const json::value* v = config.find_path(field);
    if (!v || v->is_null()) continue;
    auto bad = [&](const std::string& what) {
      return error(config_path + ": '" + field + "' is " + json::describe(v) + ", expected " + what + " for gguf metadata '" +
                   prefix + r.key + "'");
    };
    if (!v->is_array() || v->as_array().size() > r.length) throw bad("a list of at most " + std::to_string(r.length) + " integers");
    std::vector<gguf_value> items;
    for (const auto& x : v->as_array()) {
      if (!x.is_integer() || x.as_int() < -2147483648LL || x.as_int() > 2147483647LL) throw bad("a list of 32-bit integers");
      items.push_back(gguf_value::i32(static_cast<std::int32_t>(x.as_int())));
    }
    while (items.size() < r.length) items.push_back(gguf_value::i32(0));
    return gguf_value::array(gguf_type::i32, std::move(items));
  }
  if (r.array_default.empty()) return std::nullopt;
  std::vector<gguf_value> items;
  for (std::int64_t x : r.array_default) items.push_back(gguf_value::i32(static_cast<std::int32_t>(x)));
  if (fits) {
    std::int64_t sum = 0;
    for (std::int64_t x : r.array_default) sum += x;
    if (sum > static_cast<std::int64_t>(*fits / 2)) {
      items.assign(1, gguf_value::i32(static_cast<std::int32_t>(*fits / 2)));
    }
  }
  while (items.size() < r.length) items.push_back(gguf_value::i32(0));
  return gguf_value::array(gguf_type::i32, std::move(items));
}

// A bool_array entry from its config.json list of the rule's two strings (false, true);
// nullopt when the config has none of its fields.
std::optional<gguf_value> bool_array_metadata(const gguf_metadata_rule& r, const json::value& config, const std::string& config_path,
                                              const std::string& prefix) {
  for (const auto& field : r.config) {
    const json::value* v = config.find_path(field);
    if (!v || v->is_null()) continue;
    const std::string want = "a list of the strings '" + r.strings[0] + "' and '" + r.strings[1] + "'";
    if (!v->is_array())
      throw error(config_path + ": '" + field + "' is " + json::describe(v) + ", expected " + want + " for gguf metadata '" + prefix +
                  r.key + "'");
    std::vector<gguf_value> items;
    for (std::size_t i = 0; i < v->as_array().size(); ++i) {
      const json::value& x = v->as_array()[i];
      if (!x.is_string() || (x.as_string() != r.strings[0] && x.as_string() != r.strings[1]))
        throw error(config_path + ": '" + field + "' item " + std::to_string(i) + " is " + json::describe(&x) + ", expected " + want +
                    " for gguf metadata '" + prefix + r.key + "'");
      items.push_back(gguf_value::boolean(x.as_string() == r.strings[1]));
    }
    return gguf_value::array(gguf_type::boolean, std::move(items));
  }
  return std::nullopt;
}

}  // namespace

gguf_metadata gguf_output_metadata(const family_spec& spec, const json::value& config, const std::string& config_path,
                                   const gguf_file* source, const std::vector<tensor_spec>& tensors, const std::string& tokenizer_dir,
                                   std::string* tokenizer_skipped) {
  gguf_metadata md = gguf_metadata_for(spec, config, config_path, &tensors);
  auto has = [&](const std::string& key) {
    for (const auto& [k, _] : md)
      if (k == key) return true;
    return false;
  };
  md.emplace_back("general.type", gguf_value::string("model"));
  md.emplace_back("general.file_type", gguf_value::u32(llama_file_type(tensors)));
  md.emplace_back("general.quantization_version", gguf_value::u32(2));  // GGML_QNT_VERSION
  const bool source_tokenizer = source && gguf_has_tokenizer(source->metadata());
  if (source)
    for (const auto& [k, v] : source->metadata()) {
      if (!source_tokenizer && k.rfind("tokenizer.", 0) == 0) continue;  // a "none" tokenizer: replaced below
      if (k != "general.alignment" && !has(k)) md.emplace_back(k, v);
    }
  if (source_tokenizer) return md;
  gguf_tokenizer_result t;
  if (!tokenizer_dir.empty()) t = gguf_family_tokenizer(spec, tokenizer_dir, config, md);
  if (tokenizer_skipped) *tokenizer_skipped = t.skipped;
  if (t.keys.empty()) md.emplace_back("tokenizer.ggml.model", gguf_value::string("none"));
  for (auto& kv : t.keys) md.push_back(std::move(kv));
  return md;
}

bool gguf_wants_f32(const family_spec& spec, const tensor_spec& t) {
  if (t.ggml_blocks || (t.type != dtype::BF16 && t.type != dtype::F16)) return false;
  auto ends_with = [&](std::string_view tail) {
    return t.name.size() >= tail.size() && t.name.compare(t.name.size() - tail.size(), tail.size(), tail) == 0;
  };
  if (t.shape.size() <= 1 || ends_with("_norm.weight") || !ends_with(".weight")) return true;
  for (const auto& k : spec.gguf.f32_tensors)
    if (k.match(t.name)) return true;
  return false;
}

gguf_metadata gguf_metadata_for(const family_spec& spec, const json::value& config, const std::string& config_path,
                                const std::vector<tensor_spec>* tensors) {
  gguf_metadata md;
  std::map<std::string, std::string> origin;  // key -> the config field (or constant) it was made from
  md.emplace_back("general.architecture", gguf_value::string(spec.gguf.architecture));
  const std::string prefix = spec.gguf.architecture + ".";
  for (const auto& r : spec.gguf.metadata) {
    if (r.with_tensor) {
      bool found = false;
      if (tensors)
        for (const auto& t : *tensors) found = found || r.with_tensor->match(t.name).has_value();
      if (!found) continue;
    }
    bool holds = true;
    for (const auto& [field, want] : r.when_config) {
      const json::value* v = config.find_path(field);
      holds = holds && v && v->is_string() && v->as_string() == want;
    }
    if (!holds) continue;
    if (r.type == "i32_array" || r.type == "bool_array") {
      std::optional<std::uint64_t> fits;
      for (const auto& [k, v] : md)
        if (!r.default_fits.empty() && k == prefix + r.default_fits && !v.is_float() && v.type() != gguf_type::string &&
            v.type() != gguf_type::array)
          fits = v.as_u64();
      if (auto g = r.type == "i32_array" ? array_metadata(r, config, config_path, prefix, fits)
                                         : bool_array_metadata(r, config, config_path, prefix)) {
        bool dup = false;
        for (const auto& [k, _] : md) dup |= k == prefix + r.key;
        if (!dup) md.emplace_back(prefix + r.key, std::move(*g));
      }
      continue;
    }
    double x = 0;
    std::string from;
    if (r.value) {
      x = *r.value;
      from = "constant";
    } else if (!r.sum.empty()) {
      bool all = true;
      for (const auto& field : r.sum) {
        const json::value* v = config.find_path(field);
        if (!v || !v->is_number()) all = false;
        else x += v->as_double();
      }
      if (!all) continue;  // a sum of fields this config does not have: not written
      from = r.sum.front() + " + ...";
    } else if (!r.product.empty()) {
      x = 1;
      bool all = true;
      for (const auto& field : r.product) {
        const json::value* v = config.find_path(field);
        if (!v || !v->is_number()) all = false;
        else x *= v->as_double();
      }
      if (!all) continue;  // a product of fields this config does not have: not written
      from = r.product.front() + " x ...";
    } else {
      const json::value* v = nullptr;
      for (const auto& field : r.config)
        if ((v = config.find_path(field)) && !v->is_null()) {
          from = field;
          break;
        }
      if ((!v || v->is_null()) && r.absent) {
        x = *r.absent;
        from = r.config.front() + " (absent)";
      } else if (!v || v->is_null()) continue;  // absent from this config: not written
      else if (v->is_bool()) x = v->as_bool() ? 1 : 0;
      else if (v->is_number()) x = v->as_double();
      else
        throw error(config_path + ": '" + from + "' is " + json::describe(v) + ", expected a number for gguf metadata '" +
                    prefix + r.key + "'");
    }
    auto bad = [&](const char* range) {
      return error(config_path + ": '" + from + "' = " + std::to_string(x) + " does not fit gguf metadata '" + prefix + r.key +
                   "' (" + r.type + ": " + range + ")");
    };
    gguf_value g;
    if (r.type == "f32") g = gguf_value::f32(static_cast<float>(x));
    else if (r.type == "f64") g = gguf_value::f64(x);
    else if (r.type == "bool") g = gguf_value::boolean(x != 0);
    else {
      if (std::floor(x) != x) throw bad("an integer");
      if (r.type == "u32") {
        if (x < 0 || x > 4294967295.0) throw bad("0 to 2^32-1");
        g = gguf_value::u32(static_cast<std::uint32_t>(x));
      } else if (r.type == "i32") {
        if (x < -2147483648.0 || x > 2147483647.0) throw bad("-2^31 to 2^31-1");
        g = gguf_value::i32(static_cast<std::int32_t>(x));
      } else {
        if (x < 0 || x >= 18446744073709551616.0) throw bad("0 to 2^64-1");
        g = gguf_value::u64(static_cast<std::uint64_t>(x));
      }
    }
    bool dup = false;
    for (const auto& [k, _] : md) dup |= k == prefix + r.key;
    if (!dup) {  // the first rule for a key wins
      md.emplace_back(prefix + r.key, std::move(g));
      origin[prefix + r.key] = r.value ? "the constant of plugin rule" : "'" + from + "'";
    }
  }
  check_gguf_model_metadata(md, spec.gguf.architecture, config_path, [&](const std::string& key) {
    auto it = origin.find(key);
    return (it == origin.end() ? std::string() : it->second + " ") + "(gguf metadata '" + key + "')";
  });
  return md;
}

}  // namespace moereg
