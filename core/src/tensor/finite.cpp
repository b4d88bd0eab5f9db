// SPDX-License-Identifier: Apache-2.0
#include "moereg/tensor/finite.h"

#include <cstring>
#include <string>

#include "moereg/base/error.h"

namespace moereg {

namespace {

// One branch-free pass says whether there is anything to find; only then the position.
template <typename Bits>
std::int64_t first_with_exponent(const void* data, std::int64_t count, Bits exponent) {
  const auto* p = static_cast<const unsigned char*>(data);
  auto at = [&](std::int64_t i) {
    Bits v;
    std::memcpy(&v, p + sizeof(Bits) * i, sizeof(Bits));
    return (v & exponent) == exponent;
  };
  bool any = false;
  for (std::int64_t i = 0; i < count; ++i) any |= at(i);
  if (!any) return -1;
  for (std::int64_t i = 0;; ++i)
    if (at(i)) return i;
}

}  // namespace

std::int64_t first_non_finite(dtype type, const void* data, std::int64_t count) {
  switch (type) {
    case dtype::F32:
      return first_with_exponent<std::uint32_t>(data, count, 0x7f800000u);
    case dtype::BF16:
      return first_with_exponent<std::uint16_t>(data, count, 0x7f80);
    case dtype::F16:
      return first_with_exponent<std::uint16_t>(data, count, 0x7c00);
    default:
      throw error("first_non_finite: " + std::string(dtype_name(type)) + " is not F32, BF16 or F16");
  }
}

}  // namespace moereg
