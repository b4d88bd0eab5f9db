// SPDX-License-Identifier: Apache-2.0
#include "moereg/tensor/dtype.h"

#include <cmath>
#include <cstring>

namespace moereg {

namespace {
struct entry {
  dtype type;
  std::string_view name;
  std::size_t size;
};
constexpr entry table[] = {
    {dtype::BOOL, "BOOL", 1},   {dtype::U8, "U8", 1},           {dtype::I8, "I8", 1},
    {dtype::I16, "I16", 2},     {dtype::I32, "I32", 4},         {dtype::I64, "I64", 8},
    {dtype::F16, "F16", 2},     {dtype::BF16, "BF16", 2},       {dtype::F32, "F32", 4},
    {dtype::F64, "F64", 8},     {dtype::F8_E4M3, "F8_E4M3", 1}, {dtype::F8_E5M2, "F8_E5M2", 1},
    {dtype::F8_E8M0, "F8_E8M0", 1}, {dtype::U16, "U16", 2},     {dtype::U32, "U32", 4},
    {dtype::U64, "U64", 8},
};

const entry& lookup(dtype t) {
  for (const auto& e : table)
    if (e.type == t) return e;
  return table[0];
}

float fp8_e4m3_to_f32(std::uint8_t v) {
  int sign = v >> 7, exp = (v >> 3) & 0xF, man = v & 7;
  if (exp == 0xF && man == 7) return NAN;
  float r = exp == 0 ? std::ldexp(static_cast<float>(man) / 8.0f, -6)
                     : std::ldexp(1.0f + static_cast<float>(man) / 8.0f, exp - 7);
  return sign ? -r : r;
}

float fp8_e5m2_to_f32(std::uint8_t v) {
  std::uint16_t h = static_cast<std::uint16_t>(v) << 8;
  return f16_to_f32(h);
}
}  // namespace

std::size_t dtype_size(dtype t) { return lookup(t).size; }
std::string_view dtype_name(dtype t) { return lookup(t).name; }

std::optional<dtype> parse_dtype(std::string_view name) {
  for (const auto& e : table)
    if (e.name == name) return e.type;
  return std::nullopt;
}

std::string_view known_dtype_names() {
  return "BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2, F8_E8M0";
}

std::uint16_t f32_to_bf16(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu)) return static_cast<std::uint16_t>((bits >> 16) | 0x40);
  std::uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

float f16_to_f32(std::uint16_t h) {
  int sign = h >> 15, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
  float r;
  if (exp == 0) r = std::ldexp(static_cast<float>(man), -24);
  else if (exp == 31) r = man ? NAN : INFINITY;
  else r = std::ldexp(1.0f + static_cast<float>(man) / 1024.0f, exp - 15);
  return sign ? -r : r;
}

double element_as_double(dtype t, const void* data, std::size_t i) {
  auto p = static_cast<const unsigned char*>(data);
  auto load = [&](auto zero) {
    decltype(zero) v;
    std::memcpy(&v, p + i * sizeof v, sizeof v);
    return v;
  };
  switch (t) {
    case dtype::BOOL: return p[i] ? 1 : 0;
    case dtype::U8: return p[i];
    case dtype::I8: return static_cast<std::int8_t>(p[i]);
    case dtype::I16: return load(std::int16_t{});
    case dtype::U16: return load(std::uint16_t{});
    case dtype::I32: return load(std::int32_t{});
    case dtype::U32: return load(std::uint32_t{});
    case dtype::I64: return static_cast<double>(load(std::int64_t{}));
    case dtype::U64: return static_cast<double>(load(std::uint64_t{}));
    case dtype::F16: return f16_to_f32(load(std::uint16_t{}));
    case dtype::BF16: return bf16_to_f32(load(std::uint16_t{}));
    case dtype::F32: return load(float{});
    case dtype::F64: return load(double{});
    case dtype::F8_E4M3: return fp8_e4m3_to_f32(p[i]);
    case dtype::F8_E5M2: return fp8_e5m2_to_f32(p[i]);
    case dtype::F8_E8M0: return p[i] == 255 ? NAN : std::ldexp(1.0, static_cast<int>(p[i]) - 127);
  }
  return 0;
}

}  // namespace moereg
