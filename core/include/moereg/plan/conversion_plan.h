// SPDX-License-Identifier: Apache-2.0
// conversion_plan.h - every output tensor of a conversion and where its bytes come from,
// computed before any byte moves (so --dry-run can print it and every error surfaces first).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moereg/plan/decoded_checkpoint.h"
#include "moereg/safetensors/safetensors_writer.h"

namespace moereg {

struct output_tensor {
  tensor_spec spec;
  bool is_expert = false;
  // Pass-through: the stored source tensor, and the hooks that rewrite its bytes.
  const checkpoint::entry* source = nullptr;
  std::string decode_hook, encode_hook;
  // The source's element type when the output is another one (spec.type): a .gguf holds norms,
  // routers and 1-D tensors as F32 (widened exactly from BF16/F16).
  std::optional<dtype> cast_from;
  // Experts: which entry of the target layout, and per expert slot the pieces in entry order.
  const expert_entry* entry = nullptr;
  int layer = -1;
  std::vector<std::vector<matrix_view>> slots;  // stacked: one per expert in range; split: one
  std::int64_t rows_total = 0, cols = 0;        // the fused [rows_total, cols] matrix per slot
  bool transpose = false;                       // each slot is written [cols, rows_total]
  std::int64_t first_expert = 0;                // the expert of slot 0
  // Quantized experts: a scale output's slots view scales, cut and joined like the weights'
  // (cols = scale grid columns); `companion_of` names the weight output it belongs to.
  quant_role role = quant_role::none;
  std::string companion_of;
  // --dtype bf16: each slot's pieces (for a quantized pass-through weight, its one piece) are
  // dequantized with these scales (parallel to `slots`); rows_total and cols count elements.
  bool dequantize = false;
  std::vector<std::vector<piece_scales>> slot_scales;
  // --dtype from a .gguf: the source (pass-through) or each slot's pieces hold ggml blocks or
  // F16/BF16/F32 elements, decoded row by row to float32 as ggml's to_float does
  // (ggml_dequant.h), then written as spec.type (F32, or BF16 rounded once).
  bool ggml_decode = false;
  // Companions that only restate the format (GPTQ's trivial g_idx and symmetric qzeros,
  // compressed-tensors' weight_shape): their bytes, made by the planner.
  std::shared_ptr<const std::vector<std::byte>> literal;
  std::string origin;                           // human-readable provenance for --dry-run
  // An edit of the canonical bytes before they are written (a LoRA merge adds its deltas
  // here, lora/lora_merge.h): experts get one slot as [rows_total, cols] in entry order,
  // untransposed; a pass-through tensor its canonical bytes (after any decode hook).
  std::function<void(std::size_t slot, std::byte* data)> edit;
};

struct plan_options {
  std::optional<std::pair<std::int64_t, std::int64_t>> experts;  // [A, B)
  // Per-expert keys of the kept experts count from 0 instead of A: an expert-parallel slice
  // (convert --ep) is a checkpoint of B-A experts on its own. Stacked tensors are the same either way.
  bool renumber_experts = false;
  // --dtype bf16: quantized weights (experts and pass-through linear weights) are written as
  // bf16, their scales and other companions dropped.
  bool dequantize = false;
  // The dtype dequantized weights are written as: BF16, or F32 (a .gguf source only).
  dtype dequantize_to = dtype::BF16;
};

struct conversion_plan {
  const decoded_checkpoint* source = nullptr;
  const layout_spec* target = nullptr;
  std::vector<output_tensor> outputs;  // in the order they are written (safetensors order)
  std::uint64_t total_bytes = 0;
};

// Throws moereg::error listing every problem (name collisions, a bad expert range).
conversion_plan plan_conversion(const decoded_checkpoint& source, const layout_spec& target, const plan_options& options);

}  // namespace moereg
