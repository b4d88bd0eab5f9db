// SPDX-License-Identifier: Apache-2.0
// quant_format.h - how a checkpoint's linear weights are quantized, read from config.json's
// quantization_config, and the names and stored shapes that follow from it.
//
// The stored data of a quantized matrix is a grid of storage units: FP8 one byte per
// element; MXFP4 one byte per two elements along the input axis; int4 one int32 per eight.
// GPTQ stores its units transposed ([K/8, N]), the others [N, units]. Layout transforms
// move whole units and whole scale blocks, never parts of them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "moereg/base/json.h"
#include "moereg/layout/family_spec.h"
#include "moereg/quant/scale_grid.h"

namespace moereg {

enum class quant_scheme { none, fp8, mxfp4, gptq_int4, pack_int4 };

struct quant_format {
  quant_scheme scheme = quant_scheme::none;
  std::string method;         // quantization_config.quant_method as written ("fp8", "gptq", ...)
  std::int64_t block = 128;   // fp8: edge of the square scale block (weight_block_size)
  std::int64_t group = 0;     // mxfp4 / int4: elements per scale along the input axis (0: whole row)
  std::int32_t zero_word = 0; // gptq: the qzeros word of a symmetric checkpoint (0x77777777 v1, 0x88888888 v2)
  quant_naming names;         // the family's naming for this scheme

  bool quantized() const { return scheme != quant_scheme::none; }
  // Logical elements per storage unit along the input axis: 1, 2 or 8.
  std::int64_t pack() const;
  // Sub-byte data cannot be transposed by moving units (the packing axis would move).
  bool packed() const { return pack() > 1; }
  // GPTQ stores [K/8, N]: its units are transposed relative to the layout's [out, in].
  bool stored_transposed() const { return scheme == quant_scheme::gptq_int4; }
  // "fp8 (128x128 blocks)", "gptq int4 (group 128)", "none"
  std::string describe() const;
  // The scale grid of one [rows, cols] matrix for group-scaled schemes (not fp8, whose grid
  // comes from the scale's shape).
  scale_grid group_grid_for(std::int64_t rows, std::int64_t cols) const;
};

// Reads quantization_config from config.json (`where` names the file). Absent or null: none.
// An unsupported method or setting is refused with "<where>: quantization_config.<field> ...".
quant_format read_quant_format(const family_spec& spec, const json::value& config, const std::string& where);

// The fp8 format a checkpoint without quantization_config gets when its experts are F8_E4M3.
quant_format implicit_fp8_format(const family_spec& spec);

// Naming templates ("{key}_scale_inv", "{stem}.qweight") applied to a name or a template
// text, and reversed: the key a stored name was made from, or nullopt.
std::string apply_naming(const std::string& naming, const std::string& key);
std::optional<std::string> unapply_naming(const std::string& naming, const std::string& name);

}  // namespace moereg
