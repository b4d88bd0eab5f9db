// SPDX-License-Identifier: Apache-2.0
// A tiny hook library for the ABI tests, compiled several times with different macros so
// each build breaks the contract in exactly one way (see CMakeLists.txt):
//   ABI_NAME          the table's plugin name
//   ABI_API_VERSION   the api_version the table claims (default: this SDK's)
//   ABI_NO_ENTRY      export no moereg_hooks_entry at all
//   ABI_NULL_ENTRY    moereg_hooks_entry returns NULL
//   ABI_ONLY_NEGATE   export only the "negate" hook (the manifest lists "throws" too)
#include <cstring>
#include <stdexcept>

#include "moereg/abi/moereg_hooks.h"

#ifndef ABI_API_VERSION
#define ABI_API_VERSION MOEREG_PLUGIN_API_VERSION
#endif

namespace {

const moereg_host_api* host = nullptr;

// "negate": flips the sign of every F32 element (its own inverse, so ENCODE == DECODE).
// "throws": throws a C++ exception, which the guard macros must turn into a status.
moereg_status* transform(const char* hook, int32_t, const char*, const char*, const moereg_tensor_view* src,
                         moereg_tensor_view* dst) noexcept {
  MOEREG_API_BEGIN
  if (std::strcmp(hook, "throws") == 0) throw std::runtime_error("kaboom from inside the hook");
  if (std::strcmp(hook, "negate") != 0) return host->status_create(MOEREG_INVALID_ARGUMENT, "unknown hook");
  if (src->dtype != MOEREG_DTYPE_F32) return host->status_create(MOEREG_UNSUPPORTED, "negate takes F32 only");
  int64_t n = 1;
  for (int32_t i = 0; i < src->rank; ++i) n *= src->shape[i];
  const float* in = static_cast<const float*>(src->data);
  float* out = static_cast<float*>(dst->data);
  for (int64_t i = 0; i < n; ++i) out[i] = -in[i];
  return nullptr;
  MOEREG_API_END
}

#ifdef ABI_ONLY_NEGATE
const char* const hook_names[] = {"negate", nullptr};
#else
const char* const hook_names[] = {"negate", "throws", nullptr};
#endif

const moereg_hooks_api table = {ABI_API_VERSION, ABI_NAME, "0.0.1", hook_names, nullptr, nullptr, &transform};

}  // namespace

#ifdef ABI_NO_ENTRY
extern "C" MOEREG_EXPORT int moereg_not_the_entry() { return 1; }
#else
extern "C" MOEREG_EXPORT const moereg_hooks_api* moereg_hooks_entry(const moereg_host_api* h) {
  host = h;
#ifdef ABI_NULL_ENTRY
  return nullptr;
#else
  return &table;
#endif
}
#endif
