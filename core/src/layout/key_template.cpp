// SPDX-License-Identifier: Apache-2.0
#include "moereg/layout/key_template.h"

#include <algorithm>

#include "moereg/base/error.h"

namespace moereg {

namespace {
bool numeric_name(std::string_view n) {
  return n == "n" || n.rfind("layer", 0) == 0 || n.rfind("expert", 0) == 0 || n.rfind("L", 0) == 0;
}
}  // namespace

key_template::key_template(std::string text, std::string_view where) : text_(std::move(text)) {
  std::size_t i = 0;
  while (i < text_.size()) {
    std::size_t open = text_.find('{', i);
    std::size_t stray = text_.find('}', i);
    if (stray < open) throw error(std::string(where) + ": template '" + text_ + "' has a '}' without '{'");
    if (open == std::string::npos) {
      segments_.push_back({false, text_.substr(i), false, false});
      break;
    }
    if (open > i) segments_.push_back({false, text_.substr(i, open - i), false, false});
    std::size_t close = text_.find('}', open);
    if (close == std::string::npos) throw error(std::string(where) + ": template '" + text_ + "' has a '{' without '}'");
    std::string name = text_.substr(open + 1, close - open - 1);
    if (name.empty() || name.find('{') != std::string::npos)
      throw error(std::string(where) + ": template '" + text_ + "' has an empty or nested placeholder");
    if (!segments_.empty() && segments_.back().placeholder)
      throw error(std::string(where) + ": template '" + text_ + "' has two placeholders with nothing between them");
    if (std::find(names_.begin(), names_.end(), name) != names_.end())
      throw error(std::string(where) + ": template '" + text_ + "' uses {" + name + "} twice");
    segments_.push_back({true, name, numeric_name(name), name.rfind("rest", 0) == 0});
    names_.push_back(name);
    i = close + 1;
  }
}

bool key_template::has(std::string_view placeholder) const {
  return std::find(names_.begin(), names_.end(), placeholder) != names_.end();
}

std::string_view key_template::literal_prefix() const {
  if (segments_.empty() || segments_[0].placeholder) return {};
  return segments_[0].text;
}

bool key_template::match_from(std::size_t seg, std::string_view rest, captures& out) const {
  if (seg == segments_.size()) return rest.empty();
  const segment& s = segments_[seg];
  if (!s.placeholder) {
    if (rest.substr(0, s.text.size()) != s.text) return false;
    return match_from(seg + 1, rest.substr(s.text.size()), out);
  }
  if (s.numeric) {
    std::size_t n = 0;
    while (n < rest.size() && rest[n] >= '0' && rest[n] <= '9') ++n;
    if (n == 0 || n > 9) return false;
    if (n > 1 && rest[0] == '0') return false;  // "07" is not a layer number
    out[s.text] = std::string(rest.substr(0, n));
    return match_from(seg + 1, rest.substr(n), out);
  }
  // Free text: shortest capture that lets the rest match; one component unless {rest...}.
  std::size_t limit = s.spans_dots ? rest.size() : std::min(rest.size(), rest.find('.'));
  if (seg + 1 == segments_.size()) {
    if (rest.empty() || limit != rest.size()) return false;
    out[s.text] = std::string(rest);
    return true;
  }
  const std::string& next = segments_[seg + 1].text;  // a literal: placeholders never touch
  for (std::size_t at = rest.find(next, 1); at != std::string_view::npos && at <= limit; at = rest.find(next, at + 1)) {
    if (match_from(seg + 1, rest.substr(at), out)) {
      out[s.text] = std::string(rest.substr(0, at));
      return true;
    }
  }
  return false;
}

std::optional<captures> key_template::match(std::string_view name) const {
  if (segments_.empty()) return std::nullopt;
  if (!segments_[0].placeholder && name.substr(0, segments_[0].text.size()) != segments_[0].text) return std::nullopt;
  captures out;
  if (!match_from(0, name, out)) return std::nullopt;
  return out;
}

std::string key_template::format(const captures& values) const {
  std::string out;
  for (const auto& s : segments_) {
    if (!s.placeholder) {
      out += s.text;
      continue;
    }
    auto it = values.find(s.text);
    if (it == values.end()) throw error("template '" + text_ + "': no value for {" + s.text + "}");
    out += it->second;
  }
  return out;
}

}  // namespace moereg
