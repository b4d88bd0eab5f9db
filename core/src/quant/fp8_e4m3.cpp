// SPDX-License-Identifier: Apache-2.0
#include "moereg/quant/fp8_e4m3.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/quant/bf16_round.h"

namespace moereg {

namespace {
std::array<float, 256> make_table() {
  std::array<float, 256> t{};
  for (int v = 0; v < 256; ++v) {
    int exp = (v >> 3) & 15, man = v & 7;
    float mag = exp == 0 ? std::ldexp(static_cast<float>(man), -9)  // subnormal: man/8 * 2^-6
                         : std::ldexp(static_cast<float>(8 + man), exp - 10);  // (1 + man/8) * 2^(exp-7)
    if (exp == 15 && man == 7) mag = NAN;
    t[static_cast<std::size_t>(v)] = (v & 0x80) ? -mag : mag;
  }
  return t;
}
const std::array<float, 256> fp8_table = make_table();
}  // namespace

float fp8_e4m3_value(std::uint8_t v) { return fp8_table[v]; }

void dequantize_fp8_e4m3(const std::uint8_t* w, std::span<const float> scales, const scale_grid& g, std::uint16_t* out) {
  const std::int64_t per = g.scales_per_matrix();
  if (static_cast<std::int64_t>(scales.size()) != g.batch * per)
    throw error("fp8 dequantize: " + std::to_string(scales.size()) + " scales given, expected " +
                std::to_string(g.batch * per) + " for " + g.describe());
  const std::int64_t gc = g.grid_cols();
  // Under one scale an FP8 byte has only 256 possible results: where a scale covers many
  // elements, they are rounded once each into a table per scale (of the grid row being
  // written), and every element is then one lookup, ~10x faster than rounding each product.
  // Same values either way: the table holds exactly what the direct path computes.
  const bool tables = g.block_rows * g.block_cols >= 1024;
  std::vector<std::uint16_t> lut(tables ? static_cast<std::size_t>(gc) * 256 : 0);
  for (std::int64_t b = 0; b < g.batch; ++b) {
    const float* s = scales.data() + b * per;
    for (std::int64_t r0 = 0; r0 < g.rows; r0 += std::max<std::int64_t>(1, g.block_rows)) {
      const float* srow = s + (r0 / g.block_rows) * gc;
      if (tables)
        for (std::int64_t j = 0; j < gc; ++j)
          for (int v = 0; v < 256; ++v)
            lut[static_cast<std::size_t>(j * 256 + v)] =
                f64_to_bf16(static_cast<double>(fp8_table[static_cast<std::size_t>(v)]) * static_cast<double>(srow[j]));
      for (std::int64_t r = r0; r < std::min(g.rows, r0 + g.block_rows); ++r) {
        const std::uint8_t* wr = w + (b * g.rows + r) * g.cols;
        std::uint16_t* o = out + (b * g.rows + r) * g.cols;
        for (std::int64_t j = 0; j < gc; ++j) {
          const std::int64_t c0 = j * g.block_cols, c1 = std::min(g.cols, c0 + g.block_cols);
          if (tables) {
            const std::uint16_t* t = lut.data() + j * 256;
            for (std::int64_t c = c0; c < c1; ++c) o[c] = t[wr[c]];
          } else {
            const double sv = static_cast<double>(srow[j]);
            for (std::int64_t c = c0; c < c1; ++c) o[c] = f64_to_bf16(static_cast<double>(fp8_table[wr[c]]) * sv);
          }
        }
      }
    }
  }
}

}  // namespace moereg
