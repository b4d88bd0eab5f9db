// SPDX-License-Identifier: Apache-2.0
// The model's dimensions and MoE layers, read from config.json through the family's `dims` and
// `moe_layers` (decoded_checkpoint.h), and how messages name where each came from.
#include "moereg/plan/decoded_checkpoint.h"

#include <cmath>
#include <set>
#include <sstream>

#include "moereg/base/error.h"

namespace moereg {

std::string model_dims::describe() const {
  return "E=" + std::to_string(E) + " H=" + std::to_string(H) + " I=" + std::to_string(I);
}

std::string model_dims::explain(const std::vector<std::string>& symbols) const {
  std::string s;
  for (const auto& sym : symbols) {
    std::int64_t v = sym == "E" ? E : sym == "H" ? H : sym == "I" ? I : K;
    auto it = fields.find(sym);
    s += (s.empty() ? "" : ", ") + sym + " = " + std::to_string(v) +
         (it == fields.end() ? std::string() : " from `" + it->second + "`");
    if (auto o = disagreeing.find(sym); o != disagreeing.end()) s += " (also in config.json: " + o->second + ")";
  }
  return s + " in " + (config_path.empty() ? std::string("config") : config_path);
}

namespace {

// The field a value was read from (the first present), or "" when its default served.
std::string field_used(const config_value& v, const json::value& config) {
  for (const auto& f : v.fields)
    if (const json::value* x = config.find_path(f); x && !x->is_null()) return f;
  return "";
}

// 2048, 0.5, 1e+12: a config value as written, not std::to_string's "2048.000000".
std::string number_text(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

std::string fields_of(const config_value& v) {
  std::string s;
  for (const auto& f : v.fields) s += (s.empty() ? "" : " or ") + f;
  return s.empty() ? "(default)" : s;
}

std::int64_t need_dim(const family_spec& spec, const json::value& config, const std::string& path, const char* sym) {
  auto it = spec.dims.find(sym);
  if (it == spec.dims.end()) throw error(spec.manifest_path + ": dims has no '" + sym + "'");
  // Absent without a default: required_value names the field and the manifest line.
  const double v = required_value(it->second, config, path, 0, true);
  if (!(v >= 1 && v <= 2147483647.0) || std::floor(v) != v)
    throw error(path + ": " + fields_of(it->second) + " = " + number_text(v) + ", expected a positive integer (at most 2^31-1) for " +
                sym + " (family " + spec.name + ", dims." + sym + " at " + it->second.at.str() + ")");
  return static_cast<std::int64_t>(v);
}

}  // namespace

model_dims read_dims(const family_spec& spec, const json::value& config, const std::string& path) {
  model_dims d;
  d.config_path = path;
  d.E = need_dim(spec, config, path, "E");
  d.H = need_dim(spec, config, path, "H");
  d.I = need_dim(spec, config, path, "I");
  if (spec.dims.count("K")) d.K = need_dim(spec, config, path, "K");
  for (const auto& [sym, v] : spec.dims) {
    const std::string f = field_used(v, config);
    if (f.empty()) continue;
    d.fields[sym] = f;
    const json::value* used = config.find_path(f);
    for (const auto& other : v.fields)
      if (const json::value* x = config.find_path(other); other != f && x && x->is_number() && used->is_number() &&
                                                          x->as_double() != used->as_double())
        d.disagreeing[sym] += (d.disagreeing[sym].empty() ? "" : ", ") + ("`" + other + "` says " + number_text(x->as_double()));
  }
  if (d.K > d.E)
    throw error(path + ": " + fields_of(spec.dims.at("K")) + " = " + std::to_string(d.K) + " (K, experts per token) is more than " +
                fields_of(spec.dims.at("E")) + " = " + std::to_string(d.E) + " (E, experts), expected K <= E");
  const auto& r = spec.moe_layers;
  // Layer counts become ints and loop bounds: out of range is an error, not a wrapped cast.
  auto layer_value = [&](const config_value& cv, double fallback, double lo, const char* what) {
    // A field named without a default must be there: a typo would otherwise pick the MoE layers.
    const double v = required_value(cv, config, path, fallback, true);
    if (!(v >= lo && v <= 1e6) || std::floor(v) != v)
      throw error(path + ": " + fields_of(cv) + " = " + number_text(v) + ", expected " + what + " (an integer from " +
                  std::to_string(static_cast<int>(lo)) + " to 1000000)");
    return v;
  };
  int n = static_cast<int>(layer_value(r.count, 0, 1, "the layer count"));
  int step = static_cast<int>(layer_value(r.sparse_step, 1, 1, "the MoE layer step"));
  int first = static_cast<int>(layer_value(r.first_dense, 0, 0, "the count of leading dense layers"));
  std::set<int> dense;
  if (!r.dense_layers.empty())
    if (const json::value* v = config.find_path(r.dense_layers); v && !v->is_null()) {
      // A value of another kind used to be ignored: every layer was taken for an MoE layer.
      auto bad = [&] {
        return error(path + ": " + r.dense_layers + " = " + json::dump(*v) +
                     ", expected a list of decoder layer numbers (the layers without experts)");
      };
      if (!v->is_array()) throw bad();
      for (const auto& x : v->as_array()) {
        if (!x.is_integer() || x.as_int() < 0 || x.as_int() > 1000000) throw bad();
        dense.insert(static_cast<int>(x.as_int()));
      }
    }
  for (int l = 0; l < n; ++l) {
    if (l < first || dense.count(l)) continue;
    if (step > 1 && (l + 1) % step != 0) continue;
    d.moe_layers.push_back(l);
  }
  return d;
}
}  // namespace moereg
