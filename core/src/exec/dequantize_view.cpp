// SPDX-License-Identifier: Apache-2.0
#include "moereg/exec/dequantize_view.h"

#include "moereg/base/error.h"
#include "moereg/exec/executor.h"
#include "moereg/quant/fp8_e4m3.h"
#include "moereg/quant/mxfp4.h"
#include "moereg/quant/pack_quantized_int4.h"
#include "moereg/quant/scale_grid.h"
#include "moereg/tensor/finite.h"

namespace moereg {

void dequantize_view(const matrix_view& data, const piece_scales& s, const quant_format& q, std::uint16_t* out,
                     dequantize_scratch& scratch) {
  const scale_grid& g = s.grid;
  if (s.scale.rows != g.grid_rows() || s.scale.cols != g.grid_cols() || data.rows != g.rows ||
      data.cols != (g.cols + q.pack() - 1) / q.pack())
    throw error(data.source->info->name + ": dequantizing a " + std::to_string(data.rows) + "x" + std::to_string(data.cols) +
                " view with " + std::to_string(s.scale.rows) + "x" + std::to_string(s.scale.cols) + " scales for " +
                g.describe() + " over " + std::to_string(g.rows) + "x" + std::to_string(g.cols) + " elements: shapes disagree");
  // Gather both into row-major buffers: the dequantizers read contiguous [rows, units].
  scratch.units.resize(data.nbytes());
  copy_matrix(data, scratch.units.data(), data.cols, 1);
  scratch.scales.resize(s.scale.nbytes());
  copy_matrix(s.scale, scratch.scales.data(), s.scale.cols, 1);
  const std::size_t n_scales = static_cast<std::size_t>(s.scale.rows * s.scale.cols);
  // Problems name the file as well as the tensor: a checkpoint has many shards.
  const std::string scale_name = s.scale.source->file->path() + ": " + s.scale.source->info->name;
  switch (q.scheme) {
    case quant_scheme::fp8: {
      auto f = scales_as_f32(scale_name, s.scale.type, scratch.scales.data(), n_scales, s.scale.cols);
      scale_grid one = g;
      one.batch = 1;
      dequantize_fp8_e4m3(reinterpret_cast<const std::uint8_t*>(scratch.units.data()), f, one, out);
      break;
    }
    case quant_scheme::mxfp4:
      // E8M0 scales as stored: widening each refuses the NaN one (255) by name and place.
      for (std::size_t i = 0; i < n_scales; ++i)
        scale_as_f32(scale_name, dtype::F8_E8M0, scratch.scales.data() + i, static_cast<std::int64_t>(i), s.scale.cols);
      dequantize_mxfp4(reinterpret_cast<const std::uint8_t*>(scratch.units.data()),
                       reinterpret_cast<const std::uint8_t*>(scratch.scales.data()), {g.rows, g.cols}, out);
      break;
    case quant_scheme::gptq_int4:  // gathered [N, K/8]: GPTQ's words, in compressed-tensors order
    case quant_scheme::pack_int4: {
      auto f = scales_as_f32(scale_name, s.scale.type, scratch.scales.data(), n_scales, s.scale.cols);
      dequantize_pack_quantized_int4(scratch.units.data(), f, {g.rows, g.cols, g.block_cols}, out);
      break;
    }
    case quant_scheme::none:
      throw error(data.source->info->name + ": not quantized, nothing to dequantize");
  }
  // Finite scales can still overflow bf16 (an e4m3 448 times a scale past 7.6e35, an MXFP4 6
  // times 2^127), and an e4m3 NaN byte stays NaN: either would be written as a weight of a
  // complete-looking checkpoint.
  if (const std::int64_t bad = first_non_finite(dtype::BF16, out, g.rows * g.cols); bad >= 0)
    throw error(data.source->file->path() + ": " + data.source->info->name + ": dequantized element [" +
                std::to_string(bad / g.cols) + ", " + std::to_string(bad % g.cols) + "] " +
                ((out[bad] & 0x7f) ? std::string("is NaN (a NaN stored value)")
                                   : "overflows bf16 (the stored value times its scale in " + s.scale.source->info->name +
                                         " is past 3.39e38)") +
                "; expected finite weights");
}

}  // namespace moereg
