// SPDX-License-Identifier: Apache-2.0
// tensor_view.h - building the ABI's moereg_tensor_view for memory moereg already holds.
#pragma once

#include <cstdint>
#include <vector>

#include "moereg/abi/moereg_abi.h"
#include "moereg/tensor/dtype.h"

namespace moereg {

// A contiguous row-major host view of `data` (not owned) with this dtype and shape.
moereg_tensor_view contiguous_view(const void* data, dtype type, const std::vector<std::int64_t>& shape);

}  // namespace moereg
