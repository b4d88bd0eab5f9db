// SPDX-License-Identifier: Apache-2.0
// json.h - a small, strict JSON reader and writer.
//
// Strict because it reads untrusted safetensors headers: UTF-8 is validated, duplicate
// object keys are an error (the Python and Rust readers would silently keep one), nesting
// is capped, and integers are kept exact instead of going through double.
// Objects keep member order, so a header's tensors come out in the order written.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moereg::json {

class value;
using array = std::vector<value>;
using object = std::vector<std::pair<std::string, value>>;

enum class kind { null, boolean, integer, number, string, arr, obj };

class value {
 public:
  value() = default;
  value(std::nullptr_t) {}
  value(bool b) : kind_(kind::boolean), b_(b) {}
  value(int v) : kind_(kind::integer), i_(v), d_(v) {}
  value(std::int64_t v) : kind_(kind::integer), i_(v), d_(static_cast<double>(v)) {}
  value(std::uint64_t v) : kind_(kind::integer), i_(static_cast<std::int64_t>(v)), d_(static_cast<double>(v)) {}
  value(double v) : kind_(kind::number), d_(v) {}
  value(std::string s) : kind_(kind::string), s_(std::move(s)) {}
  value(const char* s) : kind_(kind::string), s_(s) {}
  value(array a) : kind_(kind::arr), a_(std::make_shared<json::array>(std::move(a))) {}
  value(object o) : kind_(kind::obj), o_(std::make_shared<json::object>(std::move(o))) {}

  json::kind kind() const { return kind_; }
  bool is_null() const { return kind_ == kind::null; }
  bool is_bool() const { return kind_ == kind::boolean; }
  bool is_integer() const { return kind_ == kind::integer; }
  bool is_number() const { return kind_ == kind::integer || kind_ == kind::number; }
  bool is_string() const { return kind_ == kind::string; }
  bool is_array() const { return kind_ == kind::arr; }
  bool is_object() const { return kind_ == kind::obj; }

  bool as_bool() const { return b_; }
  std::int64_t as_int() const { return i_; }
  double as_double() const { return d_; }
  const std::string& as_string() const { return s_; }
  const json::array& as_array() const { return *a_; }
  const json::object& as_object() const { return *o_; }
  json::array& as_array() { return *a_; }
  json::object& as_object() { return *o_; }

  // Member lookup on an object (linear; objects here are small). nullptr if absent or not an object.
  const value* find(std::string_view key) const;
  // Dotted path lookup: "text_config.hidden_size".
  const value* find_path(std::string_view dotted) const;
  // Append or replace a member of an object.
  void set(std::string key, value v);

 private:
  json::kind kind_ = kind::null;
  bool b_ = false;
  std::int64_t i_ = 0;
  double d_ = 0;
  std::string s_;
  std::shared_ptr<json::array> a_;
  std::shared_ptr<json::object> o_;
};

// Parse a whole document. Throws moereg::error "<where>: <what> at byte N" on any problem.
value parse(std::string_view text, std::string_view where, int max_depth = 64);

// Read and parse a file.
value parse_file(const std::string& path);

// Serialise. indent < 0: compact, no spaces (what the Python safetensors writer emits).
std::string dump(const value& v, int indent = -1);

// Append s as a JSON string literal (with quotes) to out. Always valid JSON: controls (also
// DEL, C1 and bidirectional overrides) are \u escapes, bytes that are not UTF-8 become U+FFFD.
void append_quoted(std::string& out, std::string_view s);

// Kind name for messages: "string", "object", ...
const char* kind_name(json::kind k);

// A config value as an error message shows it: "absent", "\"gptq\"", "true", "4", or its kind.
std::string describe(const value* v);

}  // namespace moereg::json
