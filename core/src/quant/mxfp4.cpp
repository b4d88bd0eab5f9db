// SPDX-License-Identifier: Apache-2.0
#include "moereg/quant/mxfp4.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/quant/bf16_round.h"
#include "moereg/safetensors/tensor_info.h"

namespace moereg {

namespace {
constexpr float e2m1_table[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                  -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
constexpr std::int64_t group = 32;
}  // namespace

float e2m1_value(std::uint8_t nibble) { return e2m1_table[nibble & 15]; }

mxfp4_shape check_mxfp4_shapes(std::string_view tensor, std::span<const std::int64_t> w, std::span<const std::int64_t> s) {
  auto vec = [](std::span<const std::int64_t> x) { return shape_string(std::vector<std::int64_t>(x.begin(), x.end())); };
  if (w.size() != 2 || w[0] <= 0 || w[1] <= 0)
    throw error(std::string(tensor) + ": MXFP4 weight shape " + vec(w) + ", expected [rows, cols/2]");
  mxfp4_shape r{w[0], w[1] * 2};
  std::int64_t sc = (r.cols + group - 1) / group;
  if (s.size() != 2 || s[0] != r.rows || s[1] != sc)
    throw error(std::string(tensor) + ": MXFP4 scale shape " + vec(s) + ", expected [" + std::to_string(r.rows) + ", " +
                std::to_string(sc) + "] (one per 32 of the " + std::to_string(r.cols) + " columns)");
  return r;
}

namespace {
// Every (scale byte, code) pair's bf16 result, rounded once: 256 x 16 entries, made on first
// use. A group of 32 elements then reads one row of it.
const std::uint16_t* mxfp4_table() {
  static const std::vector<std::uint16_t> table = [] {
    std::vector<std::uint16_t> t(256 * 16);
    for (int u = 0; u < 256; ++u)
      for (int nib = 0; nib < 16; ++nib)
        t[static_cast<std::size_t>(u * 16 + nib)] = f64_to_bf16(u == 255 ? NAN : std::ldexp(static_cast<double>(e2m1_table[nib]), u - 127));
    return t;
  }();
  return table.data();
}
}  // namespace

void dequantize_mxfp4(const std::uint8_t* packed, const std::uint8_t* scales, mxfp4_shape s, std::uint16_t* out) {
  const std::int64_t sc = (s.cols + group - 1) / group;
  const std::uint16_t* table = mxfp4_table();
  for (std::int64_t r = 0; r < s.rows; ++r) {
    const std::uint8_t* pr = packed + r * (s.cols / 2);
    std::uint16_t* o = out + r * s.cols;
    for (std::int64_t g = 0; g < sc; ++g) {
      const std::uint16_t* t = table + 16 * scales[r * sc + g];
      for (std::int64_t c = g * group; c < std::min(s.cols, (g + 1) * group); ++c)
        o[c] = t[(c & 1) ? (pr[c / 2] >> 4) : (pr[c / 2] & 15)];
    }
  }
}

}  // namespace moereg
