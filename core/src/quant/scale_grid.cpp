// SPDX-License-Identifier: Apache-2.0
#include "moereg/quant/scale_grid.h"

#include <cmath>
#include <cstring>

#include "moereg/base/error.h"
#include "moereg/safetensors/tensor_info.h"

namespace moereg {

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

bool all_ones(std::span<const std::int64_t> s) {
  for (auto d : s)
    if (d != 1) return false;
  return true;
}

void check_cut(std::string_view tensor, const scale_grid& g, const char* axis, std::int64_t size, std::int64_t block,
               std::int64_t a, std::int64_t b) {
  if (a < 0 || b < a || b > size)
    throw error(std::string(tensor) + ": " + axis + " range [" + std::to_string(a) + ", " + std::to_string(b) + ") is outside [0, " + std::to_string(size) + ")");
  auto on_edge = [&](std::int64_t x) { return x % block == 0 || x == size; };
  if (!on_edge(a) || !on_edge(b))
    throw error(std::string(tensor) + ": " + axis + " range [" + std::to_string(a) + ", " + std::to_string(b) + ") would split a quantization block (" +
                g.describe() + ", block size " + std::to_string(block) + " " + axis + "); expected " + axis +
                " boundaries that are multiples of " + std::to_string(block));
}

}  // namespace

std::string scale_grid::describe() const {
  switch (kind) {
    case scale_kind::per_tensor: return "per-tensor scale";
    case scale_kind::per_channel: return "per-channel scales";
    case scale_kind::block: break;
  }
  return std::to_string(block_rows) + "x" + std::to_string(block_cols) + (block_rows == 1 ? " groups" : " blocks");
}

scale_grid classify_fp8_scale(std::string_view scale_name, std::span<const std::int64_t> w,
                              std::span<const std::int64_t> s, std::int64_t block) {
  auto fail = [&](const std::string& why) -> scale_grid {
    throw error(std::string(scale_name) + ": scale shape " + shape_string(s) + " does not fit weight " + shape_string(w) + ": " + why);
  };
  if (w.size() < 2) return fail("expected a weight of rank >= 2");
  const std::size_t lead = w.size() - 2;
  scale_grid g;
  g.rows = w[lead];
  g.cols = w[lead + 1];
  for (std::size_t i = 0; i < lead; ++i) g.batch *= w[i];
  const std::int64_t grid_r = ceil_div(g.rows, block), grid_c = ceil_div(g.cols, block);
  const std::string expected = "expected [], [" + std::to_string(g.rows) + "] or [" + std::to_string(g.rows) + ", 1] (per-channel), or [" +
                               std::to_string(grid_r) + ", " + std::to_string(grid_c) + "] (" + std::to_string(block) + "x" + std::to_string(block) + " blocks)" +
                               (lead ? ", after the leading dims of the weight" : "");
  auto per_tensor = [&] {
    g.kind = scale_kind::per_tensor;
    g.block_rows = g.rows;
    g.block_cols = g.cols;
    return g;
  };
  if (all_ones(s) && s.size() <= lead) {  // one scale for all stacked matrices: one tall matrix
    g.rows *= g.batch;
    g.batch = 1;
    return per_tensor();
  }
  if (s.size() < lead || s.size() > lead + 2) return fail(expected);
  for (std::size_t i = 0; i < lead; ++i)
    if (s[i] != w[i]) return fail(expected);
  auto t = s.subspan(lead);
  bool prefer_block = scale_name.ends_with("_scale_inv");
  auto as_block = [&] {
    g.kind = scale_kind::block;
    g.block_rows = g.block_cols = block;
    return g;
  };
  // DeepSeek's block scale of a matrix no larger than one block is one value too: read as the
  // block it is, so it fuses and slices by block rules (a 128-row gate and up fuse into [2, 1]).
  if (all_ones(t)) return prefer_block && grid_r == 1 && grid_c == 1 ? as_block() : per_tensor();
  auto as_channel = [&] {
    g.kind = scale_kind::per_channel;
    g.block_rows = 1;
    g.block_cols = g.cols;
    return g;
  };
  if (t.size() == 1) {
    bool fits_block = t[0] == grid_r * grid_c, fits_channel = t[0] == g.rows;
    if (fits_block && (prefer_block || !fits_channel)) return as_block();
    if (fits_channel) return as_channel();
    return fail(expected + " or [" + std::to_string(grid_r * grid_c) + "] (block scales saved 1-D)");
  }
  if (t.size() == 2) {
    if (t[0] == grid_r && t[1] == grid_c) return as_block();  // never also [rows, 1]: that needs rows == 1
    if (t[0] == g.rows && t[1] == 1) return as_channel();
  }
  return fail(expected);
}

scale_grid group_grid(std::int64_t rows, std::int64_t cols, std::int64_t group, std::int64_t batch) {
  scale_grid g;
  g.kind = scale_kind::block;
  g.rows = rows;
  g.cols = cols;
  g.block_rows = 1;
  g.block_cols = group;
  g.batch = batch;
  return g;
}

index_range scale_rows_for(std::string_view tensor, const scale_grid& g, std::int64_t r0, std::int64_t r1) {
  if (g.kind == scale_kind::per_tensor) {
    check_cut(tensor, g, "rows", g.rows, 1, r0, r1);
    return {0, 1};
  }
  check_cut(tensor, g, "rows", g.rows, g.block_rows, r0, r1);
  return {r0 / g.block_rows, ceil_div(r1, g.block_rows)};
}

index_range scale_cols_for(std::string_view tensor, const scale_grid& g, std::int64_t c0, std::int64_t c1) {
  if (g.kind == scale_kind::per_tensor) {
    check_cut(tensor, g, "columns", g.cols, 1, c0, c1);
    return {0, 1};
  }
  check_cut(tensor, g, "columns", g.cols, g.block_cols, c0, c1);
  return {c0 / g.block_cols, ceil_div(c1, g.block_cols)};
}

scale_grid slice_rows(std::string_view tensor, const scale_grid& g, std::int64_t r0, std::int64_t r1) {
  scale_rows_for(tensor, g, r0, r1);
  scale_grid s = g;
  s.rows = r1 - r0;
  if (g.kind == scale_kind::per_tensor) s.block_rows = s.rows;
  return s;
}

scale_grid concat_rows(std::string_view tensor, const scale_grid& a, const scale_grid& b) {
  if (a.kind != b.kind || a.cols != b.cols || a.block_cols != b.block_cols ||
      (a.kind != scale_kind::per_tensor && a.block_rows != b.block_rows))
    throw error(std::string(tensor) + ": cannot fuse matrices with " + a.describe() + " [" + std::to_string(a.rows) + ", " + std::to_string(a.cols) +
                "] and " + b.describe() + " [" + std::to_string(b.rows) + ", " + std::to_string(b.cols) + "]; expected the same scale layout");
  if (a.kind == scale_kind::per_tensor)
    throw error(std::string(tensor) + ": cannot fuse two matrices that each have a per-tensor scale into one matrix");
  if (a.rows % a.block_rows != 0)
    throw error(std::string(tensor) + ": fusing after " + std::to_string(a.rows) + " rows would split a quantization block (" +
                a.describe() + ", block size " + std::to_string(a.block_rows) + " rows); expected a multiple of " + std::to_string(a.block_rows));
  scale_grid c = a;
  c.rows = a.rows + b.rows;
  return c;
}

scale_grid transpose(const scale_grid& g) {
  scale_grid t = g;
  std::swap(t.rows, t.cols);
  std::swap(t.block_rows, t.block_cols);
  return t;
}

float scale_as_f32(std::string_view tensor, dtype t, const void* at, std::int64_t index, std::int64_t grid_cols) {
  auto p = static_cast<const unsigned char*>(at);
  float v = 0;
  switch (t) {
    case dtype::F32: std::memcpy(&v, p, 4); break;
    case dtype::BF16:
    case dtype::F16: {
      std::uint16_t b;
      std::memcpy(&b, p, 2);
      v = t == dtype::BF16 ? bf16_to_f32(b) : f16_to_f32(b);
      break;
    }
    case dtype::F8_E8M0: v = *p == 255 ? NAN : std::ldexp(1.0f, static_cast<int>(*p) - 127); break;
    default:
      throw error(std::string(tensor) + ": scale dtype " + std::string(dtype_name(t)) + ", expected F32, BF16, F16 or F8_E8M0");
  }
  if (!std::isfinite(v)) {
    const std::string place = grid_cols > 0 ? "[" + std::to_string(index / grid_cols) + ", " + std::to_string(index % grid_cols) + "]"
                                            : "element " + std::to_string(index);
    throw error(std::string(tensor) + ": scale " + place + " is " + (std::isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf") +
                "; expected a finite scale (it would make every weight of its block " +
                (std::isnan(v) ? "NaN" : "infinite or NaN") + ")");
  }
  return v;
}

std::vector<float> scales_as_f32(std::string_view tensor, dtype t, const void* data, std::size_t count,
                                 std::int64_t grid_cols) {
  std::vector<float> out(count);
  auto p = static_cast<const unsigned char*>(data);
  const std::size_t size = dtype_size(t);
  for (std::size_t i = 0; i < count; ++i)
    out[i] = scale_as_f32(tensor, t, p + i * size, static_cast<std::int64_t>(i), grid_cols);
  return out;
}

}  // namespace moereg
