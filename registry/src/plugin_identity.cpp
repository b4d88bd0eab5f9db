// SPDX-License-Identifier: Apache-2.0
#include "moereg/registry/plugin_identity.h"

#include "moereg/abi/moereg_abi.h"
#include "moereg/base/error.h"
#include "moereg/base/strict_yaml.h"

#include <algorithm>
#include <filesystem>
#include <regex>

namespace moereg {

namespace fs = std::filesystem;

namespace {

const std::vector<std::string>& registry_keys() {
  static const std::vector<std::string> keys = {"name",    "version",     "api_version", "description", "extends",
                                                "model_types", "library", "library_sha256", "hooks"};
  return keys;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string kind_of(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return "null";
    case YAML::NodeType::Scalar: return "'" + n.Scalar() + "'";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    default: return "nothing";
  }
}

class checker {
 public:
  explicit checker(plugin_identity& m) : m_(m) {}

  std::string at(const YAML::Node& n) const { return m_.path + ":" + std::to_string(n.Mark().line + 1); }
  void fail(const YAML::Node& n, const std::string& what) { m_.errors.push_back(at(n) + ": " + what); }

  // A required or optional scalar matching `pattern` (described by `expected`).
  bool scalar(const char* key, std::string& out, bool required, const std::regex* pattern, const char* expected) {
    YAML::Node n = m_.root[key];
    if (!n) {
      if (required)
        m_.errors.push_back(m_.path + ":1: missing required key '" + key + "', expected " + expected);
      return false;
    }
    if (!n.IsScalar()) {
      fail(n, std::string("'") + key + "' must be " + expected + ", found " + kind_of(n));
      return false;
    }
    if (pattern && !std::regex_match(n.Scalar(), *pattern)) {
      fail(n, std::string("'") + key + "' must be " + expected + ", found " + kind_of(n));
      return false;
    }
    out = n.Scalar();
    return true;
  }

  void list(const char* key, std::vector<std::string>& out, const std::regex* pattern, const char* expected) {
    YAML::Node n = m_.root[key];
    if (!n) return;
    if (!n.IsSequence()) {
      fail(n, std::string("'") + key + "' must be a list of " + expected + ", found " + kind_of(n));
      return;
    }
    for (const auto& item : n) {
      if (!item.IsScalar() || (pattern && !std::regex_match(item.Scalar(), *pattern))) {
        fail(item, std::string("each entry of '") + key + "' must be " + expected + ", found " + kind_of(item));
        continue;
      }
      if (contains(out, item.Scalar())) {
        fail(item, std::string("'") + key + "' lists '" + item.Scalar() + "' twice");
        continue;
      }
      out.push_back(item.Scalar());
    }
  }

 private:
  plugin_identity& m_;
};

void check_keys(plugin_identity& m, checker& c) {
  for (const auto& kv : m.root) {
    const YAML::Node& key = kv.first;
    if (!key.IsScalar()) {
      c.fail(key, "top-level keys must be plain names");
      continue;
    }
    m.key_lines[key.Scalar()] = key.Mark().line + 1;
    if (!contains(registry_keys(), key.Scalar()) && !contains(engine_manifest_keys(), key.Scalar())) {
      std::string known;
      for (const auto* list : {&registry_keys(), &engine_manifest_keys()})
        for (const auto& k : *list) known += (known.empty() ? "" : ", ") + k;
      m.warnings.push_back(c.at(key) + ": unknown top-level key '" + key.Scalar() + "', expected one of " + known);
    }
  }
}

void check_api_version(plugin_identity& m, checker& c) {
  YAML::Node n = m.root["api_version"];
  if (!n) {
    m.errors.push_back(m.path + ":1: missing required key 'api_version', expected an integer");
    return;
  }
  static const std::regex integer("[0-9]{1,6}");
  if (!n.IsScalar() || !std::regex_match(n.Scalar(), integer)) {
    c.fail(n, "'api_version' must be an integer, found " + kind_of(n));
    return;
  }
  m.api_version = std::stoi(n.Scalar());
  if (m.api_version < MOEREG_PLUGIN_API_MIN || m.api_version > MOEREG_PLUGIN_API_VERSION)
    c.fail(n, "plugin API " + std::to_string(m.api_version) + ", this moereg accepts " +
                  std::to_string(MOEREG_PLUGIN_API_MIN) + ".." + std::to_string(MOEREG_PLUGIN_API_VERSION));
}

void check_library(plugin_identity& m, checker& c) {
  static const std::regex file_name("[A-Za-z0-9_.+-]+");
  static const std::regex hex64("[0-9a-fA-F]{64}");
  bool has_library = c.scalar("library", m.library, false, &file_name, "a file name in the plugin directory");
  if (has_library) {
    fs::path lib = fs::path(m.path).parent_path() / m.library;
    std::error_code ec;
    if (!fs::is_regular_file(lib, ec))
      c.fail(m.root["library"], "library '" + m.library + "' not found, expected the file " + lib.string());
  }
  if (c.scalar("library_sha256", m.library_sha256, false, &hex64, "64 hexadecimal digits")) {
    std::transform(m.library_sha256.begin(), m.library_sha256.end(), m.library_sha256.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (!m.root["library"]) c.fail(m.root["library_sha256"], "'library_sha256' given without 'library'");
  }
  if (!m.hooks.empty() && !m.root["library"])
    c.fail(m.root["hooks"], "'hooks' lists " + std::to_string(m.hooks.size()) +
                                " hook(s), expected a 'library' that exports them");
}

}  // namespace

std::string plugin_identity::where(const std::string& key) const {
  auto it = key_lines.find(key);
  return path + ":" + std::to_string(it == key_lines.end() ? 1 : it->second);
}

const std::vector<std::string>& engine_manifest_keys() {
  static const std::vector<std::string> keys = {"dims",    "moe_layers", "moe_block", "passthrough", "layouts",
                                                "reference_layout", "routing", "variants", "native_config"};
  return keys;
}

plugin_identity read_plugin_identity(const std::string& yaml_path) {
  plugin_identity m;
  m.path = yaml_path;
  try {
    m.root = load_strict_yaml_file(yaml_path);  // duplicate keys refused, with both lines
  } catch (const error& e) {
    m.errors.push_back(e.what());
    m.root = YAML::Node();
    return m;
  }
  checker c(m);
  if (!m.root.IsMap()) {
    m.errors.push_back(yaml_path + ":1: plugin.yaml must be a mapping of keys (name, version, api_version...), found " +
                       kind_of(m.root));
    m.root = YAML::Node();
    return m;
  }
  check_keys(m, c);
  static const std::regex name("[a-z0-9_]+");
  c.scalar("name", m.name, true, &name, "a name of [a-z0-9_]+");
  c.scalar("version", m.version, true, nullptr, "a version string");
  check_api_version(m, c);
  c.scalar("description", m.description, false, nullptr, "a string");
  c.scalar("extends", m.extends, false, &name, "the name of another family plugin ([a-z0-9_]+)");
  c.list("model_types", m.model_types, nullptr, "strings");
  static const std::regex hook("[A-Za-z_][A-Za-z0-9_]*");
  c.list("hooks", m.hooks, &hook, "a hook name ([A-Za-z_][A-Za-z0-9_]*)");
  check_library(m, c);
  return m;
}

}  // namespace moereg
