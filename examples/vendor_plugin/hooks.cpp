// SPDX-License-Identifier: Apache-2.0
// Hook library of the acme_moe example plugin, compiled against moereg's installed SDK only.
//
// swap_halves: exchanges the two halves of a tensor's outermost dimension, byte for byte
// (any dtype). Acme's exporter writes a fused [2I, H] gate/up block up-rows-first; this puts
// gate rows first. It is its own inverse, so ENCODE and DECODE are the same operation.
#include <cstring>
#include <stdexcept>

#include "moereg/abi/moereg_hooks.h"

namespace {

const moereg_host_api* host = nullptr;

// Bytes per element; a type this SDK's header does not know (a newer host's) is refused.
size_t dtype_bytes(int32_t dtype) {
  if (size_t n = moereg_dtype_size(dtype)) return n;
  throw std::invalid_argument("swap_halves: unknown dtype " + std::to_string(dtype));
}

moereg_status* transform(const char* hook, int32_t, const char* key, const char*, const moereg_tensor_view* src,
                         moereg_tensor_view* dst) noexcept {
  MOEREG_API_BEGIN
  if (std::strcmp(hook, "swap_halves") != 0)
    return host->status_create(MOEREG_INVALID_ARGUMENT, "acme_moe exports only the hook swap_halves");
  if (src->rank < 1 || src->shape[0] % 2 != 0)
    return host->status_create(MOEREG_INVALID_ARGUMENT,
                               (std::string("swap_halves: ") + key + " needs an even outermost dimension").c_str());
  size_t bytes = dtype_bytes(src->dtype);
  for (int32_t i = 0; i < src->rank; ++i) bytes *= static_cast<size_t>(src->shape[i]);
  const char* in = static_cast<const char*>(src->data);
  char* out = static_cast<char*>(dst->data);
  size_t half = bytes / 2;  // views are contiguous (the ABI says so for transform)
  std::memcpy(out, in + half, half);
  std::memcpy(out + half, in, half);
  return nullptr;
  MOEREG_API_END
}

const char* const hook_names[] = {"swap_halves", nullptr};

const moereg_hooks_api table = {MOEREG_PLUGIN_API_VERSION, "acme_moe", "1.0.0", hook_names,
                                nullptr /* read_config */, nullptr /* write_config */, &transform};

}  // namespace

extern "C" MOEREG_EXPORT const moereg_hooks_api* moereg_hooks_entry(const moereg_host_api* h) {
  if (!h || h->api_version < MOEREG_PLUGIN_API_MIN) return nullptr;
  host = h;
  return &table;
}
