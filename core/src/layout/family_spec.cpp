// SPDX-License-Identifier: Apache-2.0
// The family spec's own functions (moereg/layout/family_spec.h): names, lookups, and config
// values with the place that declared them.
#include <sstream>

#include "moereg/base/error.h"
#include "moereg/layout/family_spec.h"

namespace moereg {

const char* piece_name(piece p) {
  switch (p) {
    case piece::gate: return "gate";
    case piece::up: return "up";
    case piece::down: return "down";
  }
  return "?";
}

const layout_spec* family_spec::find_layout(const std::string& n) const {
  for (const auto& l : layouts) {
    if (l.name == n) return &l;
    for (const auto& a : l.aliases)
      if (a == n) return &l;
  }
  return nullptr;
}

std::vector<std::string> family_spec::layout_names() const {
  std::vector<std::string> out;
  for (const auto& l : layouts) out.push_back(l.name);
  return out;
}

const std::string* family_spec::plugin_serving(const std::string& hook) const {
  auto it = hook_plugins.find(hook);
  return it == hook_plugins.end() ? nullptr : &it->second;
}

std::optional<double> resolve_value(const config_value& v, const json::value& config) {
  for (const auto& f : v.fields) {
    const json::value* x = config.find_path(f);
    if (!x || x->is_null()) continue;
    if (x->is_bool()) return x->as_bool() ? 1.0 : 0.0;
    if (x->is_number()) return x->as_double();
  }
  return v.fallback;
}

std::string source_loc::str() const {
  if (line <= 0) return file;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column > 0 ? column : 1);
}

std::string config_value::describe() const {
  std::string s;
  for (const auto& f : fields) s += (s.empty() ? "`" : " or `") + f + "`";
  if (s.empty() && fallback) {
    std::ostringstream o;
    o << *fallback;
    return "the value " + o.str() + " in " + (at.file.empty() ? std::string("the plugin") : at.str());
  }
  return s.empty() ? "(nothing)" : s;
}

double required_value(const config_value& v, const json::value& config, const std::string& config_path, double builtin,
                      bool count) {
  if (v.empty()) return builtin;
  for (const auto& f : v.fields) {
    const json::value* x = config.find_path(f);
    if (!x || x->is_null()) continue;
    if (x->is_bool() && count)
      throw error(config_path + ": field '" + f + "' is " + (x->as_bool() ? "true" : "false") + ", expected a number for " + v.key +
                  " (" + v.at.str() + ")");
    if (x->is_bool()) return x->as_bool() ? 1.0 : 0.0;
    if (x->is_number()) return x->as_double();
    throw error(config_path + ": field '" + f + "' is not a number or boolean, expected one for " + v.key + " (" + v.at.str() + ")");
  }
  if (v.fallback) return *v.fallback;
  std::string fields;
  for (const auto& f : v.fields) fields += (fields.empty() ? "'" : "' or '") + f;
  throw error(config_path + ": no field " + fields + "', which " + v.key + " names at " + v.at.str() +
              " without a default; add the field, or write {config: " + v.fields.front() +
              ", default: <value>} in the plugin if it may be absent");
}

}  // namespace moereg
