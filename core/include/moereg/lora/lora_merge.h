// SPDX-License-Identifier: Apache-2.0
// lora_merge.h - merging an adapter into a checkpoint as it is converted: each output
// tensor holding adapted canonical matrices gets an edit that adds scale * B_e @ A_e to
// them while the executor streams them (conversion_plan.h, output_tensor::edit), so a
// merge is a conversion in every other respect: the same plan, shards, writer, resume.
#pragma once

#include <cstdint>

#include "moereg/lora/lora_adapter.h"
#include "moereg/plan/conversion_plan.h"

namespace moereg {

enum class lora_rounding {
  // PEFT's own arithmetic, bit for bit: the product B @ A in float32 (rank terms summed in
  // order), times the scale in float32; routed experts (PEFT's ParamWrapper) then round the
  // delta to the weight's dtype and round the sum again, other linear layers add the float32
  // delta to the weight and round once.
  peft,
  // Round once everywhere: weight + float32 delta, rounded to the weight's dtype.
  single,
};

// Adds the edits to `plan` (whose source is the adapter's base). Throws moereg::error when a
// pair has no matrix in the plan, the base is quantized or of a dtype other than BF16/F32,
// or an adapted pass-through tensor is not the 2-D [out, in] weight the pair fits.
void attach_lora_merge(conversion_plan& plan, const lora_adapter& adapter, lora_rounding rounding);

// The delta of one pair added to a [out, in] matrix of `type` (BF16 or F32) with row stride
// `row_stride` elements. Returns the first row where a finite weight became infinite or NaN
// (the caller refuses the merge), or -1. Exposed for tests and benchmarks.
std::int64_t add_lora_delta(const lora_pair& pair, std::byte* matrix, dtype type, std::int64_t row_stride, bool round_twice);

}  // namespace moereg
