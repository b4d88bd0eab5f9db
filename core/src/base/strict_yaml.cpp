// SPDX-License-Identifier: Apache-2.0
#include "moereg/base/strict_yaml.h"

#include <yaml-cpp/eventhandler.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/base/regular_file.h"

namespace moereg {

namespace {

// Walks the parser's events and remembers, per open map, the keys seen so far. yaml-cpp's
// node builder silently keeps the first of two equal keys, so this runs before it.
class duplicate_key_finder : public YAML::EventHandler {
 public:
  explicit duplicate_key_finder(std::string file) : file_(std::move(file)) {}

  void OnDocumentStart(const YAML::Mark& mark) override { document_ = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark, "~", true); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
    content_ = true;
    node(mark, "", false);
  }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string& value) override {
    content_ = true;
    node(mark, value, true);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    content_ = true;
    node(mark, "", false);
    frames_.push_back({false, true, {}});
  }
  void OnSequenceEnd() override { frames_.pop_back(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    content_ = true;
    node(mark, "", false);
    frames_.push_back({true, true, {}});
  }
  void OnMapEnd() override { frames_.pop_back(); }

  const YAML::Mark& document() const { return document_; }
  bool has_content() const { return content_; }  // anything but an empty (null) document

 private:
  struct frame {
    bool is_map;
    bool expect_key;
    std::map<std::string, YAML::Mark> keys;
  };

  // Every node event: when it is a key of the innermost map, check it against the others.
  void node(const YAML::Mark& mark, const std::string& text, bool comparable) {
    if (frames_.empty() || !frames_.back().is_map) return;
    frame& f = frames_.back();
    if (f.expect_key && comparable) {
      auto [it, fresh] = f.keys.emplace(text, mark);
      if (!fresh)
        throw error(yaml_where(file_, mark) + ": duplicate key '" + text + "' (first given at line " +
                    std::to_string(it->second.line + 1) + "); each key may appear once in a map");
    }
    f.expect_key = !f.expect_key;
  }

  std::string file_;
  std::vector<frame> frames_;
  YAML::Mark document_ = YAML::Mark::null_mark();
  bool content_ = false;
};

std::string read_whole(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw error(path + ": is a directory, expected a YAML file");
  return read_regular_file(path);
}

}  // namespace

std::string yaml_where(const std::string& file, const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return file;
  return file + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

std::string yaml_where(const std::string& file, const YAML::Node& node) {
  return node.IsDefined() ? yaml_where(file, node.Mark()) : file;
}

YAML::Node load_strict_yaml(const std::string& text, const std::string& name) {
  try {
    {
      std::istringstream in(text);
      YAML::Parser parser(in);
      duplicate_key_finder finder(name);
      parser.HandleNextDocument(finder);
      // YAML::Load reads the first document only: a second one (after `---`) would be ignored.
      duplicate_key_finder second(name);
      if (parser.HandleNextDocument(second) && second.has_content())
        throw error(yaml_where(name, second.document()) +
                    ": a second YAML document (after '---'); expected one document, whose keys would otherwise be ignored");
    }
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw error(yaml_where(name, e.mark) + ": YAML syntax error: " + e.msg);
  }
}

YAML::Node load_strict_yaml_file(const std::string& path) { return load_strict_yaml(read_whole(path), path); }

std::optional<bool> strict_bool(const YAML::Node& node) {
  if (!node.IsDefined() || !node.IsScalar()) return std::nullopt;
  if (node.Tag() == "!") return std::nullopt;  // quoted: "true" is a string in YAML 1.2
  if (node.Scalar() == "true") return true;
  if (node.Scalar() == "false") return false;
  return std::nullopt;
}

bool yaml11_boolean_spelling(const std::string& s) {
  static const std::set<std::string> spellings = {"y",   "Y",   "yes", "Yes", "YES", "n",     "N",     "no",    "No",
                                                  "NO",  "on",  "On",  "ON",  "off", "Off",   "OFF",   "True",  "TRUE",
                                                  "False", "FALSE"};
  return spellings.count(s) > 0;
}

}  // namespace moereg
