// SPDX-License-Identifier: Apache-2.0
// scale_grid.h - which scale covers which element of a quantized [rows, cols] matrix, and
// the block-granular bookkeeping layout transforms need to move scales with their matrix.
//
// Every scheme moereg reads is a grid: FP8 128x128 blocks, per-channel (1 x cols), per-tensor
// (rows x cols), MXFP4 and int4 groups along the input axis (1 x 32, 1 x g). A transform
// may cut a matrix only on block boundaries; the helpers refuse anything else with a
// message naming the tensor and the block size.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moereg/tensor/dtype.h"

namespace moereg {

enum class scale_kind { per_tensor, per_channel, block };

struct scale_grid {
  scale_kind kind = scale_kind::block;
  std::int64_t rows = 0, cols = 0;              // one matrix, [out, in]
  std::int64_t block_rows = 1, block_cols = 1;  // elements one scale covers (the last block may be partial)
  std::int64_t batch = 1;                       // matrices stacked in front (experts), each with its own scales

  std::int64_t grid_rows() const { return (rows + block_rows - 1) / block_rows; }
  std::int64_t grid_cols() const { return (cols + block_cols - 1) / block_cols; }
  std::int64_t scales_per_matrix() const { return grid_rows() * grid_cols(); }
  // Index of the scale of element (r, c) within one matrix's scales (row-major grid).
  std::int64_t index(std::int64_t r, std::int64_t c) const { return (r / block_rows) * grid_cols() + c / block_cols; }
  std::string describe() const;  // "128x128 blocks", "per-channel", "per-tensor", "1x32 groups"
};

// Tells FP8 scale layouts apart by shape, for a weight [..., rows, cols] (leading dims are
// experts and must match the scale's): [] / all ones -> per-tensor; [rows] or [rows, 1] ->
// per-channel; [ceil(rows/b), ceil(cols/b)] -> block; a 1-D length equal to the block count
// -> block (the per-expert shape transformers 5.17 saves). When a 1-D length fits both,
// a name ending in "_scale_inv" means block. Anything else: moereg::error naming the tensor.
scale_grid classify_fp8_scale(std::string_view scale_name, std::span<const std::int64_t> weight_shape,
                              std::span<const std::int64_t> scale_shape, std::int64_t block = 128);

// Group scales along the input axis: one scale per `group` columns of each row.
scale_grid group_grid(std::int64_t rows, std::int64_t cols, std::int64_t group, std::int64_t batch = 1);

struct index_range {
  std::int64_t begin = 0, end = 0;
  bool operator==(const index_range&) const = default;
};

// The scale rows (of one matrix's grid) that cover matrix rows [r0, r1). r0 and r1 must lie
// on block boundaries (r1 == rows is always allowed). Throws moereg::error otherwise.
index_range scale_rows_for(std::string_view tensor, const scale_grid& g, std::int64_t r0, std::int64_t r1);
// The same along columns.
index_range scale_cols_for(std::string_view tensor, const scale_grid& g, std::int64_t c0, std::int64_t c1);

// The grid of the sub-matrix rows [r0, r1) (checked as above).
scale_grid slice_rows(std::string_view tensor, const scale_grid& g, std::int64_t r0, std::int64_t r1);
// The grid of the matrix with `other` appended below `first` (fusing gate and up): the first
// part must end on a block boundary and both must use the same blocks.
scale_grid concat_rows(std::string_view tensor, const scale_grid& first, const scale_grid& other);
// The grid of the transposed matrix (the scale matrix is transposed with it).
scale_grid transpose(const scale_grid& g);

// One scale widened to float: F32, BF16, F16 exactly, F8_E8M0 as 2^(u-127); `at` points at it.
// Other dtypes, and a scale that is NaN or infinite (F8_E8M0's 255 is NaN), which would make
// every weight of its block NaN or infinite: moereg::error naming the tensor and the scale's
// place, [index / grid_cols, index % grid_cols] of a row-major scale matrix with grid_cols
// columns ("element index" when grid_cols is 0).
float scale_as_f32(std::string_view tensor, dtype t, const void* at, std::int64_t index = 0, std::int64_t grid_cols = 0);
// `count` scales from `data`, each as scale_as_f32 (index i, grid_cols as given).
std::vector<float> scales_as_f32(std::string_view tensor, dtype t, const void* data, std::size_t count,
                                 std::int64_t grid_cols = 0);

}  // namespace moereg
