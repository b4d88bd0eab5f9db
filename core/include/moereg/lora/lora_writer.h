// SPDX-License-Identifier: Apache-2.0
// lora_writer.h - writes a lora_adapter in any of the three forms, exactly: every factor
// element is copied (re-indexed, concatenated, zero-padded where a form needs it), never
// recomputed, so converting back gives the original bytes.
//
// Into a fused form (ParamWrapper, NeMo grouped), gate and up share one pair per expert:
// when every expert's gate and up carry the same A the fused rank stays r (A once, B stacked
// gate over up); otherwise the fused pair is block-diagonal of rank r_gate + r_up, as PEFT
// builds it when it loads the per-expert form. Both forms give gate_up and down of one layer
// a single rank, so the smaller is padded with zero rows of A and columns of B (exact: the
// padding adds nothing to any product). Experts an adapter leaves out are zero pairs there.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moereg/lora/lora_adapter.h"
#include "moereg/safetensors/safetensors_writer.h"

namespace moereg {

struct lora_write_options {
  lora_form to = lora_form::peft_per_expert;
  std::optional<std::pair<std::int64_t, std::int64_t>> experts;  // [A, B): only these experts
};

// One output tensor: its spec and where each block of its elements comes from.
struct lora_block {
  matrix_view src;                                       // [rows, cols]
  std::uint64_t dst_offset = 0;                          // element of (0, 0) in the output tensor
  std::int64_t dst_row_stride = 0, dst_col_stride = 0;   // elements
};
struct lora_output_tensor {
  tensor_spec spec;
  std::vector<lora_block> blocks;  // elements no block covers are zero
};

struct lora_output {
  std::vector<lora_output_tensor> tensors;  // in file order
  json::value config;                       // adapter_config.json
  std::string summary;                      // "gate_up rank 8 (block-diagonal), ..." for the CLI
};

// Plan the target form's tensors and config. Throws moereg::error when the target form
// cannot express the adapter (naming the reason: no fused layout, rslora with a changed rank...).
lora_output plan_lora_output(const lora_adapter& a, const lora_write_options& options);

// Write out_dir/adapter_model.safetensors and adapter_config.json through checkpoint_writer
// (temporary names, renamed when complete). out_dir must not exist or be empty.
void write_lora_output(const lora_output& out, const std::string& out_dir);

}  // namespace moereg
