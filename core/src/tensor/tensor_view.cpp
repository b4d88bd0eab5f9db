// SPDX-License-Identifier: Apache-2.0
#include "moereg/tensor/tensor_view.h"

namespace moereg {

moereg_tensor_view contiguous_view(const void* data, dtype type, const std::vector<std::int64_t>& shape) {
  moereg_tensor_view v{};
  v.data = const_cast<void*>(data);
  v.dtype = static_cast<std::int32_t>(type);
  v.rank = static_cast<std::int32_t>(shape.size());
  std::int64_t stride = 1;
  for (int i = v.rank - 1; i >= 0; --i) {
    v.shape[i] = shape[static_cast<std::size_t>(i)];
    v.strides[i] = stride;
    stride *= shape[static_cast<std::size_t>(i)];
  }
  v.memory = MOEREG_MEMORY_HOST;
  return v;
}

}  // namespace moereg
