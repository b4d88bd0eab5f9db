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

namespace {

template <class T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

template <class T>
T get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

void encode_item(std::string& out, const gguf_value& v) {
  switch (v.type()) {
    case gguf_type::u8: put<std::uint8_t>(out, static_cast<std::uint8_t>(v.as_u64())); break;
    case gguf_type::u16: put<std::uint16_t>(out, static_cast<std::uint16_t>(v.as_u64())); break;
    case gguf_type::u32: case gguf_type::f32: put<std::uint32_t>(out, static_cast<std::uint32_t>(v.as_u64())); break;
    case gguf_type::u64: case gguf_type::f64: put<std::uint64_t>(out, v.as_u64()); break;
    case gguf_type::i8: put<std::int8_t>(out, static_cast<std::int8_t>(v.as_i64())); break;
    case gguf_type::i16: put<std::int16_t>(out, static_cast<std::int16_t>(v.as_i64())); break;
    case gguf_type::i32: put<std::int32_t>(out, static_cast<std::int32_t>(v.as_i64())); break;
    case gguf_type::i64: put<std::int64_t>(out, v.as_i64()); break;
    case gguf_type::boolean: put<std::uint8_t>(out, v.as_bool() ? 1 : 0); break;
    case gguf_type::string:
      put<std::uint64_t>(out, v.as_string().size());
      out += v.as_string();
      break;
    case gguf_type::array: break;  // arrays do not nest
  }
}

// The item of type t encoded at p (inside a validated encoding).
gguf_value decode_item(gguf_type t, const char* p) {
  switch (t) {
    case gguf_type::u8: return gguf_value::u8(get<std::uint8_t>(p));
    case gguf_type::i8: return gguf_value::i8(get<std::int8_t>(p));
    case gguf_type::u16: return gguf_value::u16(get<std::uint16_t>(p));
    case gguf_type::i16: return gguf_value::i16(get<std::int16_t>(p));
    case gguf_type::u32: return gguf_value::u32(get<std::uint32_t>(p));
    case gguf_type::i32: return gguf_value::i32(get<std::int32_t>(p));
    case gguf_type::u64: return gguf_value::u64(get<std::uint64_t>(p));
    case gguf_type::i64: return gguf_value::i64(get<std::int64_t>(p));
    case gguf_type::f32: return gguf_value::f32_bits(get<std::uint32_t>(p));
    case gguf_type::f64: return gguf_value::f64(get<double>(p));
    case gguf_type::boolean: return gguf_value::boolean(get<std::uint8_t>(p) != 0);
    case gguf_type::string: return gguf_value::string(std::string(p + 8, get<std::uint64_t>(p)));
    case gguf_type::array: break;
  }
  return {};
}

}  // namespace

gguf_value gguf_value::array(gguf_type element, std::vector<gguf_value> items) {
  if (element == gguf_type::array) throw usage_error("gguf: arrays of arrays are not supported");
  std::string encoded;
  for (const auto& it : items) {
    if (it.type_ != element)
      throw usage_error("gguf: array of " + gguf_type_name(static_cast<std::uint32_t>(element)) + " given an item of type " +
                        gguf_type_name(static_cast<std::uint32_t>(it.type_)));
    encode_item(encoded, it);
  }
  return encoded_array(element, items.size(), std::move(encoded));
}

gguf_value gguf_value::encoded_array(gguf_type element, std::uint64_t count, std::string encoded) {
  if (element == gguf_type::array) throw usage_error("gguf: arrays of arrays are not supported");
  gguf_value r;
  r.type_ = gguf_type::array;
  r.element_ = element;
  r.count_ = count;
  r.encoded_ = std::make_shared<const std::string>(std::move(encoded));
  return r;
}

gguf_value gguf_value::item(std::uint64_t i) const {
  if (type_ != gguf_type::array || i >= count_)
    throw usage_error("gguf: item " + std::to_string(i) + " of a value with " + std::to_string(count_) + " items");
  const char* p = encoded_->data();
  if (element_ != gguf_type::string) return decode_item(element_, p + i * gguf_scalar_size(element_));
  for (std::uint64_t k = 0; k < i; ++k) p += 8 + get<std::uint64_t>(p);
  return decode_item(element_, p);
}

std::vector<gguf_value> gguf_value::items() const {
  std::vector<gguf_value> out;
  if (type_ != gguf_type::array) return out;
  out.reserve(count_);
  const char* p = encoded_->data();
  for (std::uint64_t k = 0; k < count_; ++k) {
    out.push_back(decode_item(element_, p));
    p += element_ == gguf_type::string ? 8 + get<std::uint64_t>(p) : gguf_scalar_size(element_);
  }
  return out;
}

std::vector<std::string_view> gguf_value::string_items() const {
  std::vector<std::string_view> out;
  if (type_ != gguf_type::array || element_ != gguf_type::string) return out;
  out.reserve(count_);
  const char* p = encoded_->data();
  for (std::uint64_t k = 0; k < count_; ++k) {
    auto n = get<std::uint64_t>(p);
    out.emplace_back(p + 8, n);
    p += 8 + n;
  }
  return out;
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
    case gguf_type::array: return element_ == o.element_ && count_ == o.count_ && encoded_items() == o.encoded_items();
    default: return u_ == o.u_ && i_ == o.i_;  // floats compare by bit pattern
  }
}

}  // namespace moereg
