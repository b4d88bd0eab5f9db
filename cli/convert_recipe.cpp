// SPDX-License-Identifier: Apache-2.0
#include "convert_recipe.h"

#include <yaml-cpp/yaml.h>

#include <set>

#include "moereg/base/error.h"
#include "moereg/base/printable.h"
#include "moereg/base/strict_yaml.h"

namespace moereg::cli {

void apply_recipe(const std::string& path, std::map<std::string, std::string>& opts, std::map<std::string, std::string>& where) {
  YAML::Node root = load_strict_yaml_file(path);  // duplicate keys refused
  if (!root.IsMap()) throw error(path + ":1: a recipe is a map of keys (source, output, to, ...)");
  static const std::set<std::string> keys = {"description", "source", "output", "to", "from", "family",
                                             "shard_size", "threads", "experts", "dry_run", "dtype"};
  for (const auto& kv : root) {
    std::string k = kv.first.as<std::string>();
    if (!keys.count(k)) {
      std::string list;
      for (const auto& x : keys) list += (list.empty() ? "" : ", ") + x;
      throw error(path + ":" + std::to_string(kv.first.Mark().line + 1) + ": unknown key " + quote(k) + ", expected one of: " + list);
    }
    if (k == "description") continue;
    if (!kv.second.IsScalar())
      throw error(path + ":" + std::to_string(kv.second.Mark().line + 1) + ": '" + k + "' must be a single value");
    std::string v = kv.second.as<std::string>();
    if (k == "dry_run") {
      // YAML 1.2 booleans only: `yes` or `True` must not quietly mean "really convert".
      auto b = strict_bool(kv.second);
      if (!b) throw error(yaml_where(path, kv.second) + ": 'dry_run' must be true or false, found " + quote(v));
      v = *b ? "true" : "false";
    }
    if (!opts.count(k)) {
      opts[k] = v;
      where[k] = path + ":" + std::to_string(kv.second.Mark().line + 1) + ": " + k;
    }
  }
}

}  // namespace moereg::cli
