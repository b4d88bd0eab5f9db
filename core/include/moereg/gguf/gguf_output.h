// SPDX-License-Identifier: Apache-2.0
// gguf_output.h - a conversion written as one .gguf file instead of safetensors shards: the
// same plan, the same executor (tensor bytes streamed into a gguf_writer at their offsets),
// the same temporary-name-then-rename. Used by layouts with `container: gguf`.
#pragma once

#include <string>
#include <vector>

#include "moereg/checkpoint/checkpoint_writer.h"
#include "moereg/gguf/gguf_writer.h"

namespace moereg {

// The GGUF tensor for an output spec: its shape in elements and its ggml type (the dtype's
// element type, or its ggml blocks). Throws moereg::error naming the tensor when GGUF cannot
// hold it (FP8, U8, BOOL and unsigned 16/32/64-bit dtypes; more than 4 dimensions).
gguf_tensor_spec gguf_spec_of(const tensor_spec& spec);

// Every tensor GGUF cannot hold, one message each (empty when all fit).
std::vector<std::string> gguf_output_problems(const std::vector<tensor_spec>& specs);

// One shard: <stem>.gguf with every tensor, in the given order.
std::vector<shard_plan> plan_gguf_file(std::vector<tensor_spec> specs, const std::string& stem);

// Makes a gguf_writer for a shard, with this metadata (the safetensors __metadata__ the
// executor passes is not used).
sink_factory gguf_sink_factory(gguf_metadata metadata);

}  // namespace moereg
