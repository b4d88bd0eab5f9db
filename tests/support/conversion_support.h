// SPDX-License-Identifier: Apache-2.0
// conversion_support.h - in-process conversions for tests, with the family plugins read
// straight from the source tree and their hook libraries (transforms) from the build tree.
#pragma once

#include <string>

#include "moereg/checkpoint/checkpoint.h"
#include "moereg/checkpoint/compare.h"
#include "moereg/exec/executor.h"
#include "moereg/layout/family_catalog.h"
#include "moereg/plan/conversion_plan.h"

namespace moereg::test {

// Every plugins/*/plugin.yaml of the source tree.
const family_catalog& source_catalog();

// The family spec for a checkpoint's model_type (first plugin claiming it).
family_spec spec_for(const checkpoint& ckpt);

// Runs a family's transform hooks in-process from its hook library in the build tree
// (build/lib/moereg/plugins/<name>), as `moereg convert` does from the installed one.
hook_runner plugin_hooks(const family_spec& spec, const json::value& config);

// Convert ckpt (in layout `from`, or detected when empty) to `to`, writing out_dir.
void convert(const std::string& ckpt_path, const std::string& out_dir, const std::string& to, const std::string& from = "",
             const plan_options& options = {});

// Tensors of a checkpoint as comparison refs.
std::vector<tensor_ref> refs(const checkpoint& c);

// The first ten differences of a comparison, one per line.
std::string diff_text(const comparison& c);

// Checkpoints a and b hold the same tensors (names, dtypes, shapes, bytes): a GoogleTest
// failure listing the differences otherwise.
void expect_same_tensors(const std::string& a, const std::string& b);

// Every tensor of `want` outside the vision tower (names under model.visual.) is in `got` with
// the same dtype, shape and bytes, and `got` holds nothing else: a text-only GGUF of a
// vision-language checkpoint, converted back.
void expect_language_model_equal(const std::string& got_path, const std::string& want_path);

// The file a conversion to `layout` writes into dir: model.safetensors, or model.gguf.
std::string output_file(const std::string& dir, const std::string& layout, const family_spec& spec);

}  // namespace moereg::test
