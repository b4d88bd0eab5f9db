// SPDX-License-Identifier: Apache-2.0
// shared_expert_bf16.cpp - an F8_E4M3 shared expert widened to BF16 for a backend built before
// plugin API 3 (moe_layer.h).
#include <cstring>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/plan/moe_layer.h"
#include "moereg/quant/fp8_e4m3.h"
#include "moereg/tensor/tensor_view.h"

namespace moereg {

namespace {

// The rows x cols matrix a 2-D view holds, as contiguous elements of `bytes` each.
std::vector<std::byte> rows_of(const moereg_tensor_view& v, const char* what, std::size_t bytes) {
  if (v.rank != 2 || !v.data || v.strides[1] != 1)
    throw error(std::string(what) + ": expected a 2-D view with contiguous rows");
  const auto rows = static_cast<std::size_t>(v.shape[0]), cols = static_cast<std::size_t>(v.shape[1]);
  std::vector<std::byte> out(rows * cols * bytes);
  for (std::size_t r = 0; r < rows; ++r)
    std::memcpy(out.data() + r * cols * bytes, static_cast<const std::byte*>(v.data) + r * v.strides[0] * bytes, cols * bytes);
  return out;
}

// The F8 matrices of `rows` rows stacked in w, each with its scales [ceil(rows/b0),
// ceil(cols/b1)] stacked the same way in s, into out.
void widen(const moereg_tensor_view& w, const moereg_tensor_view& s, std::int64_t rows, const std::int64_t block[2],
           const char* what, std::uint16_t* out) {
  const std::vector<std::byte> q = rows_of(w, what, 1), f = rows_of(s, what, 4);
  scale_grid g;
  g.rows = rows;
  g.cols = w.shape[1];
  g.block_rows = block[0];
  g.block_cols = block[1];
  const std::int64_t cols = g.cols;
  const auto* scales = reinterpret_cast<const float*>(f.data());
  if (static_cast<std::int64_t>(f.size() / 4) != w.shape[0] / rows * g.scales_per_matrix())
    throw error(std::string(what) + ": " + std::to_string(f.size() / 4) + " scales, expected " +
                std::to_string(w.shape[0] / rows * g.scales_per_matrix()) + " for " + g.describe());
  for (std::int64_t r0 = 0; r0 < w.shape[0]; r0 += rows)
    dequantize_fp8_e4m3(reinterpret_cast<const std::uint8_t*>(q.data()) + r0 * cols,
                        std::span<const float>(scales + (r0 / rows) * g.scales_per_matrix(), static_cast<std::size_t>(g.scales_per_matrix())),
                        g, out + r0 * cols);
}

}  // namespace

std::unique_ptr<std::uint16_t[]> shared_expert_to_bf16(moereg_moe_weights& w) {
  if (!w.shared_w13.data || (w.shared_w13.dtype != MOEREG_DTYPE_F8_E4M3 && w.shared_w2.dtype != MOEREG_DTYPE_F8_E4M3))
    return nullptr;
  if (w.shared_w13.dtype != MOEREG_DTYPE_F8_E4M3 || w.shared_w2.dtype != MOEREG_DTYPE_F8_E4M3 || !w.shared_w13_scale.data ||
      !w.shared_w2_scale.data || w.shared_w13_scale.dtype != MOEREG_DTYPE_F32 || w.shared_w2_scale.dtype != MOEREG_DTYPE_F32)
    throw error("shared expert: F8_E4M3 gate/up and down with their F32 scales expected together");
  const std::int64_t Is = w.shared_intermediate, H = w.hidden;
  const std::int64_t n13 = 2 * Is * H, n2 = H * Is;
  auto out = std::make_unique<std::uint16_t[]>(static_cast<std::size_t>(n13 + n2));
  // Gate and up each on their own grid: the up rows' scales start after ceil(Is/b0) rows.
  widen(w.shared_w13, w.shared_w13_scale, Is, w.scale_block, "shared_w13", out.get());
  widen(w.shared_w2, w.shared_w2_scale, H, w.scale_block, "shared_w2", out.get() + n13);
  w.shared_w13 = contiguous_view(out.get(), dtype::BF16, {2 * Is, H});
  w.shared_w2 = contiguous_view(out.get() + n13, dtype::BF16, {H, Is});
  w.shared_w13_scale = moereg_tensor_view{};
  w.shared_w2_scale = moereg_tensor_view{};
  return out;
}

}  // namespace moereg
