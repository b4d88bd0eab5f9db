// SPDX-License-Identifier: Apache-2.0
#include "gguf_values.h"

#include <cstdint>

#include "moereg/base/printable.h"

namespace moereg::cli {

namespace {

// Arrays longer than this (a tokenizer's 150,000 tokens) are summarised: type, count and
// the first items.
constexpr std::size_t listed_items = 16;

json::value scalar_json(const gguf_value& v) {
  switch (v.type()) {
    case gguf_type::boolean: return json::value(v.as_bool());
    case gguf_type::f32:
    case gguf_type::f64: return json::value(v.as_f64());
    case gguf_type::string: return json::value(v.as_string());
    default:
      if (v.is_signed()) return json::value(v.as_i64());
      if (v.as_u64() > static_cast<std::uint64_t>(INT64_MAX)) return json::value(static_cast<double>(v.as_u64()));
      return json::value(v.as_u64());
  }
}

}  // namespace

// A GGUF value as JSON: scalars as they are; an array as a list, or when long as
// {"type": "array", "element_type": "STRING", "count": N, "first": [...]}.
json::value gguf_json(const gguf_value& v) {
  if (v.type() != gguf_type::array) return scalar_json(v);
  json::array items;
  // Item by item: items() would decode the whole array (metadata arrays can hold millions).
  for (std::uint64_t i = 0; i < v.array_size() && i < listed_items; ++i) items.push_back(scalar_json(v.item(i)));
  if (v.array_size() <= listed_items) return json::value(std::move(items));
  return json::value(json::object{{"type", json::value("array")},
                                  {"element_type", json::value(gguf_type_name(static_cast<std::uint32_t>(v.element_type())))},
                                  {"count", json::value(v.array_size())},
                                  {"first", json::value(std::move(items))}});
}

// One line of text per key: strings escaped and cut at 72 bytes, arrays as [TYPE x N].
std::string gguf_text(const gguf_value& v) {
  if (v.type() == gguf_type::array)
    return "[" + gguf_type_name(static_cast<std::uint32_t>(v.element_type())) + " x " + std::to_string(v.array_size()) + "]";
  if (v.type() == gguf_type::string) {
    const std::string& t = v.as_string();
    if (t.size() <= 72) return quote(t);
    std::size_t cut = 72;
    while (cut > 0 && (static_cast<unsigned char>(t[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 sequence
    return quote(t.substr(0, cut)) + "... (" + std::to_string(t.size()) + " bytes)";
  }
  return json::dump(scalar_json(v));
}

}  // namespace moereg::cli
