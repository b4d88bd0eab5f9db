// SPDX-License-Identifier: Apache-2.0
// checked.h - overflow-checked size arithmetic.
//
// Every size and offset derived from file contents goes through these, so a crafted
// header can never wrap a length into something small and in bounds. On overflow they
// throw moereg::error with the caller's context ("file: tensor 'x': ...").
#pragma once

#include <cstdint>
#include <string_view>

namespace moereg {

[[noreturn]] void throw_overflow(std::string_view context);

inline std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, std::string_view context) {
  std::uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) throw_overflow(context);
  return r;
}

inline std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, std::string_view context) {
  std::uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw_overflow(context);
  return r;
}

}  // namespace moereg
