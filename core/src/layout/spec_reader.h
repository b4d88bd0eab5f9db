// SPDX-License-Identifier: Apache-2.0
// spec_reader.h - the scalar readers plugin.yaml's parser (family_spec_parser.cpp) is built
// from: each reads one node as the type its key wants; on anything else it records one error
// with file:line:column and returns a neutral value, so a file's problems are all reported at once.
#pragma once

#include <yaml-cpp/yaml.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "moereg/layout/family_spec.h"
#include "moereg/layout/key_template.h"

namespace moereg::detail {

class spec_reader {
 public:
  spec_reader(std::string file, std::string plugin) : file_(std::move(file)), plugin_(std::move(plugin)) {}
  std::vector<std::string> errors;

  source_loc loc(const YAML::Node& n) const;
  std::string at(const YAML::Node& n) const;
  void fail(const YAML::Node& n, const std::string& what);
  // Unknown keys are typos until proven otherwise.
  void allowed_keys(const YAML::Node& map, const std::set<std::string>& keys, const std::string& where);
  std::string str(const YAML::Node& n, const std::string& what);
  // YAML 1.2: true or false, nothing else (yaml-cpp alone would take yes, on, True...).
  bool boolean(const YAML::Node& n, const std::string& what);
  double number(const YAML::Node& n, const std::string& what);
  std::vector<std::string> str_list(const YAML::Node& n, const std::string& what);
  key_template tmpl(const YAML::Node& n, const std::string& what);
  // A number or boolean: literal, config field name(s), or {config: ..., default: ...}.
  config_value value(const YAML::Node& n, const std::string& what);

 protected:
  std::string file_, plugin_;  // the plugin's name once read (it goes into every source_loc)
};

}  // namespace moereg::detail
