// SPDX-License-Identifier: Apache-2.0
// decoded_checkpoint.h - a checkpoint read through one layout of its family: every expert
// piece as a strided matrix view into the mapped files, every other tensor under its
// canonical name. Nothing is copied; this is what conversions, verify and moe run consume.
//
// Decoding is where strict accounting happens: each source tensor is claimed by exactly one
// rule (an expert entry, or a rename/pass-through), and every missing expert, wrong shape,
// dense layer holding experts or unclaimed tensor is collected and reported together.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "moereg/checkpoint/checkpoint.h"
#include "moereg/layout/family_spec.h"
#include "moereg/plan/quant_format.h"
#include "moereg/quant/scale_grid.h"

namespace moereg {

// A logical [rows, cols] ([out, in]) matrix inside a source tensor.
struct matrix_view {
  const checkpoint::entry* source = nullptr;
  std::uint64_t offset = 0;  // element offset of (0, 0) in the source tensor
  std::int64_t rows = 0, cols = 0;
  std::int64_t row_stride = 0, col_stride = 0;  // elements
  dtype type = dtype::BF16;

  std::size_t element_size() const { return dtype_size(type); }
  const std::byte* at(std::int64_t r, std::int64_t c) const {
    return source->data() + (offset + static_cast<std::uint64_t>(r * row_stride + c * col_stride)) * element_size();
  }
  bool contiguous() const { return col_stride == 1 && (row_stride == cols || rows == 1); }
  std::uint64_t nbytes() const { return static_cast<std::uint64_t>(rows * cols) * element_size(); }
};

// The scales of one quantized expert piece: `scale` views the piece's [grid rows, grid cols]
// scales inside the scale tensor (strided like the weight: transposed storage swaps them),
// `grid` says which block of the logical [rows, cols] matrix each scale covers (rows and
// cols are logical elements, not storage units).
struct piece_scales {
  matrix_view scale;
  scale_grid grid;
};

struct model_dims {
  std::int64_t E = 0, H = 0, I = 0, K = 0;
  std::vector<int> moe_layers;  // layers that hold experts (config-derived, plus MTP layers found)
  std::string describe() const;  // "E=8 H=64 I=24"
  // The config.json field each symbol was read from ("I" -> "moe_intermediate_size"), and
  // the file: shape errors name them ("I = 24 from `moe_intermediate_size` in config.json").
  std::map<std::string, std::string> fields;
  // Other fields of a symbol that config.json also has, with another value: "`num_local_experts`
  // says 5" (the first present field is the one read; explain() names the rest).
  std::map<std::string, std::string> disagreeing;
  std::string config_path;
  // "E = 8 from `num_experts`, I = 24 from `moe_intermediate_size` in /m/config.json" for the
  // symbols given, in that order.
  std::string explain(const std::vector<std::string>& symbols) const;
};

// Compute E/H/I/K and the MoE layers from config.json. Throws moereg::error naming the field.
model_dims read_dims(const family_spec& spec, const json::value& config, const std::string& config_path);

enum class quant_role { none, data, scale, g_idx, zeros, shape };

struct passthrough_tensor {
  std::string canonical;                // name in the family's canonical naming
  const checkpoint::entry* source;      // the stored tensor
  std::string decode_hook;              // hook that turns the stored bytes into canonical bytes
  // A quantized linear weight outside the experts (attention, shared experts) and its
  // companions: each carries the canonical name of the unquantized weight and the naming
  // template that leads from it, so renames move the companions with the weight.
  quant_role role = quant_role::none;
  std::string quant_key;                     // "model.layers.0.self_attn.o_proj.weight"
  std::string quant_naming;                  // "{key}", "{key}_scale_inv", "{stem}.qweight"
  const checkpoint::entry* scale = nullptr;  // role data: its scale tensor
  // An F32 tensor of a .gguf that llama.cpp's converter widened from the model's dtype
  // (norms, routers, 1-D; config.json "dtype"/"torch_dtype" bfloat16): its canonical form is
  // BF16, narrowed exactly (a value BF16 cannot hold is an error, never rounded).
  std::optional<dtype> narrow_to;
  // A tensor the layout stores cut per head (its `splits`: llama.cpp's deepseek2 keeps
  // kv_b_proj as attn_k_b, transposed, and attn_v_b): per head, views of its rows in canonical
  // order, one per part, into the stored parts; `source` is then the first part and
  // `joined_shape` the canonical [heads * rows, cols]. Empty for a tensor stored whole.
  std::vector<std::vector<matrix_view>> joined;
  std::vector<std::int64_t> joined_shape;
  // A tensor the layout stores with a size-1 axis dropped (its `squeezes`): the canonical
  // shape, with the axis back. Empty when the stored shape is the canonical one.
  std::vector<std::int64_t> unsqueezed_shape;
  // The canonical shape: joined, unsqueezed, or as stored.
  const std::vector<std::int64_t>& shape() const {
    if (!joined.empty()) return joined_shape;
    if (!unsqueezed_shape.empty()) return unsqueezed_shape;
    return source->info->shape;
  }
};

struct decoded_checkpoint {
  const checkpoint* ckpt = nullptr;
  const family_spec* spec = nullptr;
  const layout_spec* layout = nullptr;
  model_dims dims;
  // experts[layer][expert][piece]
  std::map<int, std::vector<std::array<matrix_view, 3>>> experts;
  std::vector<passthrough_tensor> others;  // sorted by canonical name
  dtype expert_dtype = dtype::BF16;         // as stored: F8_E4M3, I32 (int4), U8 (mxfp4) when quantized
  // The entries of a layer differ in type (a llama.cpp-quantized .gguf: Q8_0 gate/up, F16
  // down); expert_dtype is then the first one's. Conversions take each tensor's own type.
  bool mixed_expert_types = false;

  // Quantized checkpoints. `quant` says the scheme (none when not quantized). Expert views
  // then hold storage units: F8_E4M3 bytes [rows, cols]; packed int4/mxfp4 [rows, cols / pack]
  // (GPTQ's transposed storage appears as strides). expert_scales[layer][expert][piece]
  // holds each piece's scales, parallel to `experts`; empty when not quantized.
  quant_format quant;
  std::map<int, std::vector<std::array<piece_scales, 3>>> expert_scales;
  dtype scale_dtype = dtype::F32;
  std::size_t scale_naming = 0;  // which of quant.names.scale the checkpoint uses
  // GPTQ/compressed-tensors companions that carry no information of their own (trivial
  // g_idx, symmetric qzeros, weight_shape): checked when read, written again when present.
  bool has_g_idx = false, has_zeros = false, has_shape = false;
  dtype shape_dtype = dtype::I64;
};

// Decode ckpt through `layout`. Throws moereg::error listing every problem found.
decoded_checkpoint decode_checkpoint(const checkpoint& ckpt, const family_spec& spec, const layout_spec& layout,
                                     const model_dims& dims);

// The canonical name of a stored name under a layout's renames, or the layout name of a
// canonical one (first matching rule wins; no rule: unchanged).
std::string to_canonical(const layout_spec& layout, const std::string& stored);
std::string from_canonical(const layout_spec& layout, const std::string& canonical);

// Which layouts of `spec` the checkpoint's tensors fit. Throws when none fits, or when
// several fit equally (identical keys and shapes, e.g. a transposed fused tensor with
// H == 2I), asking for --from.
const layout_spec& detect_layout(const checkpoint& ckpt, const family_spec& spec, const model_dims& dims);

}  // namespace moereg
