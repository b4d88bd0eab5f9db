// SPDX-License-Identifier: Apache-2.0
// key_template.h - tensor-name templates with named placeholders, matched without regex.
//
// "model.layers.{layer}.mlp.experts.{expert}.gate_proj.weight" matches a name and captures
// layer and expert; format() does the reverse. {layer} and {expert} (and any name starting
// with them, or {n}) capture decimal numbers; {rest} (or any name starting with "rest")
// captures one or more characters, dots included; any other {name} captures one dotted
// component (one or more characters, no dot). Templates rather than regexes because a template
// reverses exactly: the rename from A to B is the rename from B to A with sides swapped.
// Matching is a literal scan, so planning 500,000 names against a few dozen templates
// takes well under a second.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moereg {

using captures = std::map<std::string, std::string, std::less<>>;

class key_template {
 public:
  key_template() = default;
  // Throws moereg::error("<where>: ...") for an unbalanced brace or two adjacent placeholders.
  key_template(std::string text, std::string_view where);

  const std::string& text() const { return text_; }
  bool empty() const { return text_.empty(); }
  const std::vector<std::string>& placeholders() const { return names_; }
  bool has(std::string_view placeholder) const;
  // The literal text before the first placeholder (for quick rejection and indexing).
  std::string_view literal_prefix() const;

  // Match a whole name; nullopt if it does not match.
  std::optional<captures> match(std::string_view name) const;
  // Fill in the placeholders. Throws moereg::error if one is missing from values.
  std::string format(const captures& values) const;

 private:
  struct segment {
    bool placeholder;
    std::string text;  // literal text, or the placeholder name
    bool numeric;
    bool spans_dots;
  };
  bool match_from(std::size_t seg, std::string_view rest, captures& out) const;

  std::string text_;
  std::vector<segment> segments_;
  std::vector<std::string> names_;
};

}  // namespace moereg
