// SPDX-License-Identifier: Apache-2.0
// bench_fp8.cpp - see bench_fp8.h.
#include "bench_fp8.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "bench_support.h"
#include "moereg/base/error.h"
#include "moereg/base/parallel.h"
#include "moereg/quant/fp8_e4m3.h"
#include "moereg/quant/scale_grid.h"
#include "moereg/tensor/dtype.h"

namespace moereg::app {

namespace {

std::int64_t cdiv(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

std::size_t index_of(const safetensors_writer& w, const std::string& name) {
  for (std::size_t i = 0; i < w.tensors().size(); ++i)
    if (w.tensors()[i].name == name) return i;
  throw error("bench weights: no tensor " + name);
}

}  // namespace

std::uint8_t to_fp8_e4m3(float v) {
  // The 127 finite non-negative codes ascend with their byte value (0x7F is NaN).
  static const std::array<float, 127> values = [] {
    std::array<float, 127> a{};
    for (int b = 0; b < 127; ++b) a[b] = fp8_e4m3_value(static_cast<std::uint8_t>(b));
    return a;
  }();
  const float m = std::min(std::fabs(v), values.back());
  const auto hi = std::lower_bound(values.begin(), values.end(), m);
  int b = static_cast<int>(hi - values.begin());
  if (b > 0) {
    const float up = values[b] - m, down = m - values[b - 1];
    if (down < up || (down == up && (b - 1) % 2 == 0)) --b;
  }
  return static_cast<std::uint8_t>(b | (std::signbit(v) && b ? 0x80 : 0));
}

std::vector<tensor_spec> fp8_expert_specs(const std::string& name, std::int64_t experts, std::int64_t rows,
                                          std::int64_t cols, int parts) {
  const std::int64_t part_rows = rows / parts;
  return {{name, dtype::BF16, {experts, rows, cols}},
          {name + "_f8", dtype::F8_E4M3, {experts, rows, cols}},
          {name + "_scale", dtype::F32, {experts, parts * cdiv(part_rows, bench_fp8_block), cdiv(cols, bench_fp8_block)}}};
}

void write_fp8_experts(safetensors_writer& w, const std::string& name, std::int64_t experts, std::int64_t rows,
                       std::int64_t cols, int parts, float scale, std::uint64_t seed, int threads) {
  const std::size_t ib = index_of(w, name), i8 = index_of(w, name + "_f8"), is = index_of(w, name + "_scale");
  const std::int64_t part_rows = rows / parts;
  const scale_grid g{scale_kind::block, part_rows, cols, bench_fp8_block, bench_fp8_block, 1};
  const std::size_t n = static_cast<std::size_t>(part_rows * cols), ns = static_cast<std::size_t>(g.scales_per_matrix());
  struct scratch {
    std::vector<std::uint16_t> b, d;
    std::vector<std::uint8_t> q;
    std::vector<float> s;
  };
  std::vector<scratch> per_worker(static_cast<std::size_t>(std::max(threads, 1)));
  // One matrix (one expert's gate, up or down) per item.
  run_ordered({static_cast<std::size_t>(experts * parts), static_cast<unsigned>(per_worker.size()), {}},
              [&](std::size_t j, unsigned worker) {
                scratch& w8 = per_worker[worker];
                w8.b.resize(n), w8.d.resize(n), w8.q.resize(n), w8.s.resize(ns);
                auto& [b, d, q, s] = w8;
                fill_bf16(b.data(), n, scale, seed * 1000003 + j);
                for (std::int64_t br = 0; br < g.grid_rows(); ++br)
                  for (std::int64_t bc = 0; bc < g.grid_cols(); ++bc) {
                    const std::int64_t r0 = br * g.block_rows, r1 = std::min(part_rows, r0 + g.block_rows);
                    const std::int64_t c0 = bc * g.block_cols, c1 = std::min(cols, c0 + g.block_cols);
                    float amax = 0;
                    for (std::int64_t r = r0; r < r1; ++r)
                      for (std::int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(bf16_to_f32(b[r * cols + c])));
                    const float sc = amax > 0 ? amax / 448.0f : 1.0f;
                    s[br * g.grid_cols() + bc] = sc;
                    for (std::int64_t r = r0; r < r1; ++r)
                      for (std::int64_t c = c0; c < c1; ++c) q[r * cols + c] = to_fp8_e4m3(bf16_to_f32(b[r * cols + c]) / sc);
                  }
                dequantize_fp8_e4m3(q.data(), s, g, d.data());
                w.write(ib, j * n * 2, d.data(), n * 2);
                w.write(i8, j * n, q.data(), n);
                w.write(is, j * ns * 4, s.data(), ns * 4);
              });
}

}  // namespace moereg::app
