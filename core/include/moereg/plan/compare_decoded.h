// SPDX-License-Identifier: Apache-2.0
// compare_decoded.h - verify across layouts: two checkpoints of one family, each read
// through its own layout, compared piece by piece and tensor by canonical tensor.
#pragma once

#include "moereg/checkpoint/compare.h"
#include "moereg/exec/executor.h"
#include "moereg/plan/decoded_checkpoint.h"

namespace moereg {

// Expert pieces are compared element by element through their strided views; other tensors
// by canonical name, after their decode hooks (e.g. Mistral's wq/wk order) when `hooks` is set.
comparison compare_decoded(const decoded_checkpoint& a, const decoded_checkpoint& b, const hook_runner& hooks_a = {},
                           const hook_runner& hooks_b = {});

}  // namespace moereg
