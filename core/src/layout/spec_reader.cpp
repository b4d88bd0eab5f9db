// SPDX-License-Identifier: Apache-2.0
// spec_reader.cpp - plugin.yaml's scalar readers (see spec_reader.h).
#include "spec_reader.h"

#include "moereg/base/error.h"
#include "moereg/base/strict_yaml.h"

namespace moereg::detail {

source_loc spec_reader::loc(const YAML::Node& n) const {
  source_loc l{file_, 0, 0, plugin_};
  if (n.IsDefined() && !n.Mark().is_null()) {
    l.line = n.Mark().line + 1;
    l.column = n.Mark().column + 1;
  }
  return l;
}

std::string spec_reader::at(const YAML::Node& n) const { return loc(n).str(); }

void spec_reader::fail(const YAML::Node& n, const std::string& what) { errors.push_back(at(n) + ": " + what); }

void spec_reader::allowed_keys(const YAML::Node& map, const std::set<std::string>& keys, const std::string& where) {
  if (!map.IsMap()) return;
  for (const auto& kv : map) {
    std::string k = kv.first.as<std::string>();
    if (!keys.count(k)) {
      std::string list;
      for (const auto& a : keys) list += (list.empty() ? "" : ", ") + a;
      fail(kv.first, "unknown key '" + k + "' in " + where + ", expected one of: " + list);
    }
  }
}

std::string spec_reader::str(const YAML::Node& n, const std::string& what) {
  if (!n.IsScalar()) {
    fail(n, what + " must be a string");
    return {};
  }
  return n.as<std::string>();
}

bool spec_reader::boolean(const YAML::Node& n, const std::string& what) {
  if (auto b = strict_bool(n)) return *b;
  fail(n, what + " must be true or false" + (n.IsScalar() ? ", found '" + n.Scalar() + "'" : std::string()));
  return false;
}

double spec_reader::number(const YAML::Node& n, const std::string& what) {
  try {
    if (n.IsScalar()) return n.as<double>();
  } catch (const YAML::Exception&) {
  }
  fail(n, what + " must be a number" + (n.IsScalar() ? ", found '" + n.Scalar() + "'" : std::string()));
  return 0;
}

std::vector<std::string> spec_reader::str_list(const YAML::Node& n, const std::string& what) {
  std::vector<std::string> out;
  if (!n) return out;
  if (n.IsScalar()) return {n.as<std::string>()};
  if (!n.IsSequence()) {
    fail(n, what + " must be a string or a list of strings");
    return out;
  }
  for (const auto& x : n) out.push_back(str(x, what + " entry"));
  return out;
}

key_template spec_reader::tmpl(const YAML::Node& n, const std::string& what) {
  std::string s = str(n, what);
  try {
    return key_template(s, at(n));
  } catch (const error& e) {
    errors.push_back(e.what());
    return {};
  }
}

config_value spec_reader::value(const YAML::Node& n, const std::string& what) {
  config_value v;
  v.key = what;
  if (!n) return v;
  v.at = loc(n);
  if (n.IsScalar()) {
    std::string s = n.as<std::string>();
    if (yaml11_boolean_spelling(s)) fail(n, what + " is '" + s + "', expected true or false (YAML 1.2) or a config.json field");
    else if (s == "true" || s == "false") v.fallback = s == "true" ? 1 : 0;
    else {
      try {
        std::size_t used = 0;
        double d = std::stod(s, &used);
        if (used == s.size()) v.fallback = d;
        else v.fields = {s};
      } catch (...) {
        v.fields = {s};
      }
    }
    return v;
  }
  if (n.IsSequence()) {
    v.fields = str_list(n, what);
    return v;
  }
  if (n.IsMap()) {
    allowed_keys(n, {"config", "default"}, what);
    v.fields = str_list(n["config"], what + ".config");
    if (n["default"]) {
      std::string d = n["default"].IsScalar() ? n["default"].Scalar() : "";
      if (d == "true" || d == "false") v.fallback = d == "true" ? 1 : 0;
      else {
        try {
          v.fallback = n["default"].as<double>();
        } catch (...) {
          fail(n["default"], what + ".default must be a number or boolean");
        }
      }
    }
    return v;
  }
  fail(n, what + " must be a number, a config field, or {config: ..., default: ...}");
  return v;
}

}  // namespace moereg::detail
