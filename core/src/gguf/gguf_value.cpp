// SPDX-License-Identifier: Apache-2.0
#include "moereg/gguf/gguf_value.h"

#include <cstring>

#include "moereg/base/error.h"

namespace moereg {

std::string gguf_type_name(std::uint32_t t) {
  static const char* const names[] = {"UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32", "FLOAT32",
                                      "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64"};
  if (t < sizeof names / sizeof names[0]) return names[t];
  return "unknown (" + std::to_string(t) + ")";
}

std::size_t gguf_scalar_size(gguf_type t) {
  switch (t) {
    case gguf_type::u8: case gguf_type::i8: case gguf_type::boolean: return 1;
    case gguf_type::u16: case gguf_type::i16: return 2;
    case gguf_type::u32: case gguf_type::i32: case gguf_type::f32: return 4;
    case gguf_type::u64: case gguf_type::i64: case gguf_type::f64: return 8;
    case gguf_type::string: case gguf_type::array: return 0;
  }
  return 0;
}

gguf_value gguf_value::unsigned_value(gguf_type t, std::uint64_t v) {
  gguf_value r;
  r.type_ = t;
  r.u_ = v;
  return r;
}

gguf_value gguf_value::signed_value(gguf_type t, std::int64_t v) {
  gguf_value r;
  r.type_ = t;
  r.i_ = v;
  return r;
}

// Floats keep their bit pattern in u_ as well, so a NaN payload survives a round trip
// (widening a signalling NaN to double would quiet it).
gguf_value gguf_value::f32(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, 4);
  return f32_bits(bits);
}

gguf_value gguf_value::f32_bits(std::uint32_t bits) {
  gguf_value r;
  r.type_ = gguf_type::f32;
  r.u_ = bits;
  float v;
  std::memcpy(&v, &bits, 4);
  r.f_ = v;
  return r;
}

gguf_value gguf_value::f64(double v) {
  gguf_value r;
  r.type_ = gguf_type::f64;
  std::memcpy(&r.u_, &v, 8);
  r.f_ = v;
  return r;
}

gguf_value gguf_value::boolean(bool v) { return unsigned_value(gguf_type::boolean, v ? 1 : 0); }

gguf_value gguf_value::string(std::string v) {
  gguf_value r;
  r.type_ = gguf_type::string;
  r.s_ = std::move(v);
  return r;
}

gguf_value gguf_value::array(gguf_type element, std::vector<gguf_value> items) {
  if (element == gguf_type::array) throw usage_error("gguf: arrays of arrays are not supported");
  for (const auto& it : items)
    if (it.type_ != element)
      throw usage_error("gguf: array of " + gguf_type_name(static_cast<std::uint32_t>(element)) + " given an item of type " +
                        gguf_type_name(static_cast<std::uint32_t>(it.type_)));
  gguf_value r;
  r.type_ = gguf_type::array;
  r.element_ = element;
  r.items_ = std::move(items);
  return r;
}

bool gguf_value::is_unsigned() const {
  return type_ == gguf_type::u8 || type_ == gguf_type::u16 || type_ == gguf_type::u32 || type_ == gguf_type::u64;
}

bool gguf_value::is_signed() const {
  return type_ == gguf_type::i8 || type_ == gguf_type::i16 || type_ == gguf_type::i32 || type_ == gguf_type::i64;
}

std::optional<std::uint64_t> gguf_value::to_uint() const {
  if (is_unsigned()) return u_;
  if (is_signed() && i_ >= 0) return static_cast<std::uint64_t>(i_);
  return std::nullopt;
}

bool gguf_value::operator==(const gguf_value& o) const {
  if (type_ != o.type_) return false;
  switch (type_) {
    case gguf_type::string: return s_ == o.s_;
    case gguf_type::array: return element_ == o.element_ && items_ == o.items_;
    default: return u_ == o.u_ && i_ == o.i_;  // floats compare by bit pattern
  }
}

}  // namespace moereg
