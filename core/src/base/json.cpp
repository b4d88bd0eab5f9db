// SPDX-License-Identifier: Apache-2.0
#include "moereg/base/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "moereg/base/error.h"
#include "moereg/base/printable.h"
#include "moereg/base/regular_file.h"

namespace moereg::json {

const value* value::find(std::string_view key) const {
  if (kind_ != kind::obj) return nullptr;
  for (const auto& [k, v] : *o_)
    if (k == key) return &v;
  return nullptr;
}

const value* value::find_path(std::string_view dotted) const {
  const value* cur = this;
  while (cur) {
    auto dot = dotted.find('.');
    cur = cur->find(dotted.substr(0, dot));
    if (dot == std::string_view::npos) return cur;
    dotted.remove_prefix(dot + 1);
  }
  return nullptr;
}

void value::set(std::string key, value v) {
  if (kind_ != kind::obj) {
    kind_ = kind::obj;
    o_ = std::make_shared<json::object>();
  }
  for (auto& [k, old] : *o_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  o_->emplace_back(std::move(key), std::move(v));
}

const char* kind_name(json::kind k) {
  switch (k) {
    case kind::null: return "null";
    case kind::boolean: return "boolean";
    case kind::integer: return "integer";
    case kind::number: return "number";
    case kind::string: return "string";
    case kind::arr: return "array";
    case kind::obj: return "object";
  }
  return "?";
}

std::string describe(const value* v) {
  if (!v) return "absent";
  if (v->is_string()) return "\"" + v->as_string() + "\"";
  if (v->is_bool()) return v->as_bool() ? "true" : "false";
  if (v->is_integer()) return std::to_string(v->as_int());
  return kind_name(v->kind());
}

namespace {

class parser {
 public:
  parser(std::string_view text, std::string_view where, int max_depth)
      : s_(text), where_(where), max_depth_(max_depth) {}

  value document() {
    // Some Windows editors save one; JSON forbids it, and Python's json (transformers) refuses it.
    if (s_.substr(0, 3) == "\xEF\xBB\xBF")
      throw error(std::string(where_) + ": invalid JSON: it starts with a UTF-8 byte order mark (EF BB BF), which JSON does not "
                  "allow; save the file as UTF-8 without one");
    skip_ws();
    value v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected trailing characters");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw error(std::string(where_) + ": invalid JSON: " + what + " at byte " + std::to_string(pos_));
  }

  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  value parse_value(int depth) {
    if (depth > max_depth_) fail("nesting deeper than " + std::to_string(max_depth_));
    if (pos_ >= s_.size()) fail("unexpected end of input");
    char c = s_[pos_];
    if (c == '{') return parse_object(depth);
    if (c == '[') return parse_array(depth);
    if (c == '"') return value(parse_string());
    if (c == 't') return literal("true", value(true));
    if (c == 'f') return literal("false", value(false));
    if (c == 'n') return literal("null", value(nullptr));
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    fail(std::string("unexpected character '") + c + "'");
  }

  value literal(std::string_view word, value v) {
    if (s_.substr(pos_, word.size()) != word) fail("invalid literal");
    pos_ += word.size();
    return v;
  }

  value parse_object(int depth) {
    ++pos_;
    object members;
    std::unordered_set<std::string_view> seen;
    skip_ws();
    if (eat('}')) return value(std::move(members));
    for (;;) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key");
      std::string key = parse_string();
      skip_ws();
      if (!eat(':')) fail("expected ':'");
      skip_ws();
      value v = parse_value(depth + 1);
      members.emplace_back(std::move(key), std::move(v));
      skip_ws();
      if (eat(',')) continue;
      if (eat('}')) break;
      fail("expected ',' or '}'");
    }
    // Duplicate keys: checked after the vector stops growing so the views stay valid.
    seen.reserve(members.size());
    for (const auto& [k, v] : members)
      if (!seen.insert(k).second) fail("duplicate key \"" + k + "\"");
    return value(std::move(members));
  }

  value parse_array(int depth) {
    ++pos_;
    array items;
    skip_ws();
    if (eat(']')) return value(std::move(items));
    for (;;) {
      skip_ws();
      items.push_back(parse_value(depth + 1));
      skip_ws();
      if (eat(',')) continue;
      if (eat(']')) break;
      fail("expected ',' or ']'");
    }
    return value(std::move(items));
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else fail("invalid \\u escape");
    }
    return v;
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) out += static_cast<char>(cp);
    else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // Validates one UTF-8 sequence starting at pos_ and copies it to out.
  void utf8_char(std::string& out) {
    auto b0 = static_cast<unsigned char>(s_[pos_]);
    int n;
    unsigned cp;
    if (b0 < 0x80) { out += s_[pos_++]; return; }
    if ((b0 & 0xE0) == 0xC0) { n = 1; cp = b0 & 0x1F; }
    else if ((b0 & 0xF0) == 0xE0) { n = 2; cp = b0 & 0x0F; }
    else if ((b0 & 0xF8) == 0xF0) { n = 3; cp = b0 & 0x07; }
    else fail("invalid UTF-8");
    if (static_cast<std::size_t>(n) >= s_.size() - pos_) fail("truncated UTF-8");
    for (int i = 1; i <= n; ++i) {
      auto b = static_cast<unsigned char>(s_[pos_ + i]);
      if ((b & 0xC0) != 0x80) fail("invalid UTF-8");
      cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr unsigned min_cp[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("invalid UTF-8");
    out.append(s_.data() + pos_, n + 1);
    pos_ += n + 1;
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("unterminated string");
      char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c == '\\') {
        ++pos_;
        if (pos_ >= s_.size()) fail("unterminated escape");
        char e = s_[pos_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            unsigned cp = hex4();
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (!(eat('\\') && eat('u'))) fail("unpaired surrogate");
              unsigned lo = hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired surrogate");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
              fail("unpaired surrogate");
            }
            put_utf8(out, cp);
            break;
          }
          default: fail("invalid escape");
        }
        continue;
      }
      utf8_char(out);
    }
  }

  value parse_number() {
    std::size_t start = pos_;
    bool integral = true;
    eat('-');
    if (pos_ >= s_.size()) fail("invalid number");
    if (s_[pos_] == '0') ++pos_;
    else if (s_[pos_] >= '1' && s_[pos_] <= '9') while (pos_ < s_.size() && isdigit(s_[pos_])) ++pos_;
    else fail("invalid number");
    if (eat('.')) {
      integral = false;
      if (pos_ >= s_.size() || !isdigit(s_[pos_])) fail("invalid number");
      while (pos_ < s_.size() && isdigit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (!eat('+')) eat('-');
      if (pos_ >= s_.size() || !isdigit(s_[pos_])) fail("invalid number");
      while (pos_ < s_.size() && isdigit(s_[pos_])) ++pos_;
    }
    std::string_view text = s_.substr(start, pos_ - start);
    if (integral) {
      std::int64_t i;
      auto r = std::from_chars(text.data(), text.data() + text.size(), i);
      if (r.ec == std::errc() && r.ptr == text.data() + text.size()) return value(i);
      // Too large for int64: keep as a double; callers needing an exact integer reject it.
    }
    double d = std::strtod(std::string(text).c_str(), nullptr);
    return value(d);
  }

  static bool isdigit(char c) { return c >= '0' && c <= '9'; }

  std::string_view s_;
  std::string_view where_;
  int max_depth_;
  std::size_t pos_ = 0;
};

void dump_to(std::string& out, const value& v, int indent, int level) {
  auto newline = [&](int lvl) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<std::size_t>(indent * lvl), ' ');
  };
  switch (v.kind()) {
    case kind::null: out += "null"; break;
    case kind::boolean: out += v.as_bool() ? "true" : "false"; break;
    case kind::integer: out += std::to_string(v.as_int()); break;
    case kind::number: {
      double d = v.as_double();
      if (!std::isfinite(d)) { out += "null"; break; }
      char buf[32];
      auto r = std::to_chars(buf, buf + sizeof buf, d);
      std::string_view t(buf, static_cast<std::size_t>(r.ptr - buf));
      out += t;
      if (t.find_first_of(".eE") == std::string_view::npos) out += ".0";
      break;
    }
    case kind::string: append_quoted(out, v.as_string()); break;
    case kind::arr: {
      out += '[';
      bool first = true;
      for (const auto& item : v.as_array()) {
        if (!first) out += ',';
        first = false;
        newline(level + 1);
        dump_to(out, item, indent, level + 1);
      }
      if (!v.as_array().empty()) newline(level);
      out += ']';
      break;
    }
    case kind::obj: {
      out += '{';
      bool first = true;
      for (const auto& [k, item] : v.as_object()) {
        if (!first) out += ',';
        first = false;
        newline(level + 1);
        append_quoted(out, k);
        out += indent < 0 ? ":" : ": ";
        dump_to(out, item, indent, level + 1);
      }
      if (!v.as_object().empty()) newline(level);
      out += '}';
      break;
    }
  }
}

}  // namespace

value parse(std::string_view text, std::string_view where, int max_depth) {
  return parser(text, where, max_depth).document();
}

value parse_file(const std::string& path) {
  return parse(read_regular_file(path), path);
}

std::string dump(const value& v, int indent) {
  std::string out;
  dump_to(out, v, indent, 0);
  return out;
}

void append_quoted(std::string& out, std::string_view s) {
  // Valid JSON whatever the bytes, and nothing a terminal acts on: besides what JSON
  // requires, DEL, C1 controls and bidirectional overrides become \u escapes, and a byte
  // that is not part of valid UTF-8 becomes U+FFFD (see moereg/base/printable.h).
  out += '"';
  char buf[8];
  for (std::size_t i = 0; i < s.size();) {
    std::uint32_t cp = 0;
    std::size_t n = utf8_sequence(s, i, cp);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (n == 1) {
      char c = s[i];
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (cp < 0x20 || cp == 0x7F) {
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
            out += buf;
          } else {
            out += c;
          }
      }
    } else if (is_control_point(cp)) {
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
      out += buf;
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  out += '"';
}

}  // namespace moereg::json
