// SPDX-License-Identifier: Apache-2.0
// gguf_value.h - one GGUF metadata value: a typed scalar, a string, or an array of one type.
//
// The value type is kept exactly (a u32 stays a u32), so a file read and written back is
// byte-identical. Arrays hold one element type and do not nest (neither does llama.cpp).
//
// Arrays keep their items encoded as a GGUF file stores them (little-endian scalars; a
// string as a u64 length and its bytes), shared between copies of the value: a vocabulary
// of 10^5 tokens costs its bytes in the file, not 10^5 decoded values. Items are decoded
// on demand: item() one at a time, string_items() as views, items() all at once (about
// 100 bytes per item, so for small arrays).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moereg {

enum class gguf_type : std::uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
  string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};

// "UINT32", "STRING", ... (llama.cpp's spelling); "unknown (N)" past the table.
std::string gguf_type_name(std::uint32_t t);
// Bytes of a fixed-size scalar type; 0 for string and array.
std::size_t gguf_scalar_size(gguf_type t);

class gguf_value {
 public:
  gguf_value() = default;
  static gguf_value u8(std::uint8_t v) { return unsigned_value(gguf_type::u8, v); }
  static gguf_value u16(std::uint16_t v) { return unsigned_value(gguf_type::u16, v); }
  static gguf_value u32(std::uint32_t v) { return unsigned_value(gguf_type::u32, v); }
  static gguf_value u64(std::uint64_t v) { return unsigned_value(gguf_type::u64, v); }
  static gguf_value i8(std::int8_t v) { return signed_value(gguf_type::i8, v); }
  static gguf_value i16(std::int16_t v) { return signed_value(gguf_type::i16, v); }
  static gguf_value i32(std::int32_t v) { return signed_value(gguf_type::i32, v); }
  static gguf_value i64(std::int64_t v) { return signed_value(gguf_type::i64, v); }
  static gguf_value f32(float v);
  static gguf_value f32_bits(std::uint32_t bits);
  static gguf_value f64(double v);
  static gguf_value boolean(bool v);
  static gguf_value string(std::string v);
  // Every item must have type `element` (not array). Throws moereg::usage_error otherwise.
  static gguf_value array(gguf_type element, std::vector<gguf_value> items);
  // An array from `count` items already encoded the GGUF way in `encoded`, which the caller
  // has validated (the GGUF reader): every string item inside `encoded`, BOOL items 0 or 1.
  static gguf_value encoded_array(gguf_type element, std::uint64_t count, std::string encoded);

  gguf_type type() const { return type_; }
  gguf_type element_type() const { return element_; }  // arrays only
  bool is_unsigned() const;
  bool is_signed() const;
  bool is_float() const { return type_ == gguf_type::f32 || type_ == gguf_type::f64; }

  std::uint64_t as_u64() const { return u_; }  // unsigned types and bool; the bit pattern of floats
  std::int64_t as_i64() const { return i_; }   // signed types
  double as_f64() const { return f_; }         // f32 (widened exactly) and f64
  bool as_bool() const { return u_ != 0; }
  const std::string& as_string() const { return s_; }
  // Arrays: the item count, one item, every item decoded, the items of a STRING array as
  // views into this value (valid while it lives), and the items as a GGUF file encodes them.
  std::uint64_t array_size() const { return count_; }
  gguf_value item(std::uint64_t i) const;  // O(1), or O(i) for STRING items
  std::vector<gguf_value> items() const;
  std::vector<std::string_view> string_items() const;
  std::string_view encoded_items() const { return encoded_ ? std::string_view(*encoded_) : std::string_view(); }

  // Any integer type holding a value >= 0, converted; nullopt for other types or negatives.
  std::optional<std::uint64_t> to_uint() const;

  bool operator==(const gguf_value& o) const;

 private:
  static gguf_value unsigned_value(gguf_type t, std::uint64_t v);
  static gguf_value signed_value(gguf_type t, std::int64_t v);
  gguf_type type_ = gguf_type::u8;
  gguf_type element_ = gguf_type::u8;
  std::uint64_t u_ = 0;
  std::int64_t i_ = 0;
  double f_ = 0;
  std::string s_;
  std::uint64_t count_ = 0;
  std::shared_ptr<const std::string> encoded_;
};

}  // namespace moereg
