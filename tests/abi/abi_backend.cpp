// SPDX-License-Identifier: Apache-2.0
// A backend library for the registry tests: it is found, version-checked and probed like a
// real one. It computes nothing: create refuses with MOEREG_UNSUPPORTED, which the tests
// also use to check that a backend's status reaches the host, and says in that message which
// dtype of shared expert it was given (the host widens an F8_E4M3 one for a table before API 3).
//   ABI_SCORE         what probe returns (0 = cannot run here, with ABI_REASON)
//   ABI_TABLE         the table's api_version (default 1)
#include <cstdio>

#include "moereg/abi/moereg_backend.h"

namespace {

const moereg_host_api* host = nullptr;

int32_t probe(char* reason, size_t size) noexcept {
  if (ABI_SCORE == 0) std::snprintf(reason, size, "%s", ABI_REASON);
  return ABI_SCORE;
}

#ifndef ABI_TABLE
#define ABI_TABLE 1
#endif

const char* dtype_text(int32_t d) {
  return d == MOEREG_DTYPE_BF16 ? "BF16" : d == MOEREG_DTYPE_F8_E4M3 ? "F8_E4M3" : d == MOEREG_DTYPE_F32 ? "F32" : "other";
}

moereg_status* create(const moereg_moe_weights* w, const moereg_routing_params*, const moereg_backend_options*,
                      moereg_backend** out) noexcept {
  *out = nullptr;
  char text[200];
  std::snprintf(text, sizeof text, "the abitest backend is a registry test fixture and computes nothing (shared expert given: %s)",
                w && w->shared_w13.data ? dtype_text(w->shared_w13.dtype) : "none");
  return host->status_create(MOEREG_UNSUPPORTED, text);
}

moereg_status* forward(moereg_backend*, const moereg_tensor_view*, const moereg_tensor_view*, const moereg_tensor_view*,
                       moereg_tensor_view*) noexcept {
  return host->status_create(MOEREG_UNSUPPORTED, "no handle");
}

void destroy(moereg_backend*) noexcept {}

// A version 1 table (the slots up to get_extension, none of API 2), as a backend built
// before backend options declares it: the host must keep loading it. ABI_TABLE 2 declares the
// same slots as a version 2 table without create_with_options.
const moereg_backend_api table = {ABI_TABLE, "abitest", ABI_VERSION, &probe, &create, &forward, &destroy};

}  // namespace

extern "C" MOEREG_EXPORT const moereg_backend_api* moereg_backend_entry(const moereg_host_api* h) {
  host = h;
  return &table;
}
