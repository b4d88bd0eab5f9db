// SPDX-License-Identifier: Apache-2.0
#include "moereg/gguf/gguf_family.h"

#include <cmath>
#include <limits>
#include <map>

#include "moereg/base/error.h"
#include "moereg/gguf/gguf_model_metadata.h"

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
  for (const auto& r : spec.gguf.metadata) {
    if (r.config.empty() || has_any(c, r.config)) continue;
    if (const gguf_value* v = f.find(prefix + r.key)) {
      if (v->type() == gguf_type::string || v->type() == gguf_type::array)
        throw error(f.path() + ": gguf metadata '" + prefix + r.key + "': expected a number (" + r.type + "), found " +
                    gguf_type_name(static_cast<std::uint32_t>(v->type())));
      set_path(c, r.config.front(), from_gguf(*v, r.type));
    }
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

gguf_metadata gguf_metadata_for(const family_spec& spec, const json::value& config, const std::string& config_path) {
  gguf_metadata md;
  std::map<std::string, std::string> origin;  // key -> the config field (or constant) it was made from
  md.emplace_back("general.architecture", gguf_value::string(spec.gguf.architecture));
  const std::string prefix = spec.gguf.architecture + ".";
  for (const auto& r : spec.gguf.metadata) {
    double x = 0;
    std::string from;
    if (r.value) {
      x = *r.value;
      from = "constant";
    } else {
      const json::value* v = nullptr;
      for (const auto& field : r.config)
        if ((v = config.find_path(field)) && !v->is_null()) {
          from = field;
          break;
        }
      if (!v || v->is_null()) continue;  // absent from this config: not written
      if (v->is_bool()) x = v->as_bool() ? 1 : 0;
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
