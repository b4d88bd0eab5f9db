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
#include <variant>
#include <vector>

#include "moereg/plan/decoded_checkpoint.h"
#include "moereg/safetensors/safetensors_writer.h"

namespace moereg {

// Each output tensor is one of three kinds, each with its own writer in the executor.

// Bytes the planner made: companions that only restate the format (GPTQ's trivial g_idx and
// symmetric qzeros, compressed-tensors' weight_shape), made again for the target's shape.
struct literal_output {
  std::shared_ptr<const std::vector<std::byte>> bytes;
};

// One stored tensor written whole under its new name: copied as it lies, or rewritten by the
// family's hooks, widened or narrowed, or (--dtype from a .gguf) decoded from ggml blocks.
struct stored_output {
  const checkpoint::entry* source = nullptr;
  std::string decode_hook, encode_hook;
  // The source's element type when the output is another one (spec.type): a .gguf holds norms,
  // routers and 1-D tensors as F32 (widened exactly from BF16/F16).
  std::optional<dtype> cast_from;
  // The source holds ggml blocks or F16/BF16/F32 elements, decoded as ggml's to_float does
  // (ggml_dequant.h) and written as spec.type (F32, or BF16 rounded once).
  bool ggml_decode = false;
};

// How an assembled tensor's pieces become its elements.
enum class piece_decoding {
  copy,        // as stored (cut, joined, transposed)
  dequantize,  // --dtype bf16: with each piece's scales (assembled_output::slot_scales)
  ggml,        // --dtype from a .gguf: ggml blocks or F16/BF16/F32 rows decoded row by row
};

// A tensor assembled from views of stored ones: the slots of one entry of the target layout
// (stacked: one per expert in range; split: one), the scales of a quantized one cut and
// joined like its weights (cols = scale grid columns), a quantized pass-through weight
// dequantized whole (one slot), or a tensor cut per head or joined from such parts (one slot
// per head, tensor_splits.h). Only the first two have an `entry`.
struct assembled_output {
  const expert_entry* entry = nullptr;
  int layer = -1;
  std::vector<std::vector<matrix_view>> slots;  // per slot, the pieces in entry order
  std::int64_t rows_total = 0, cols = 0;        // the fused [rows_total, cols] matrix per slot
  bool transpose = false;                       // each slot is written [cols, rows_total]
  std::int64_t first_expert = 0;                // the expert of slot 0
  piece_decoding decoding = piece_decoding::copy;
  std::vector<std::vector<piece_scales>> slot_scales;  // decoding == dequantize: parallel to slots

  bool is_expert() const { return entry != nullptr; }
};

struct output_tensor {
  tensor_spec spec;
  std::variant<stored_output, assembled_output, literal_output> body;
  std::string origin;  // human-readable provenance for --dry-run
  // An edit of the canonical bytes before they are written (a LoRA merge adds its deltas
  // here, lora/lora_merge.h): an assembled tensor gets each slot as [rows_total, cols] in entry
  // order, untransposed; a stored tensor its canonical bytes (after any decode hook).
  std::function<void(std::size_t slot, std::byte* data)> edit;

  const stored_output* stored() const { return std::get_if<stored_output>(&body); }
  const assembled_output* assembled() const { return std::get_if<assembled_output>(&body); }
  assembled_output* assembled() { return std::get_if<assembled_output>(&body); }
  const literal_output* literal() const { return std::get_if<literal_output>(&body); }
  // Work items: one per slot of an assembled tensor, else one.
  std::size_t items() const { return assembled() ? assembled()->slots.size() : 1; }
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
