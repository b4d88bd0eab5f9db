// SPDX-License-Identifier: Apache-2.0
// A backend library for the registry tests: it is found, version-checked and probed like a
// real one. It computes nothing: create refuses with MOEREG_UNSUPPORTED, which the tests
// also use to check that a backend's status reaches the host.
//   ABI_SCORE         what probe returns (0 = cannot run here, with ABI_REASON)
#include <cstdio>

#include "moereg/abi/moereg_backend.h"

namespace {

const moereg_host_api* host = nullptr;

int32_t probe(char* reason, size_t size) noexcept {
  if (ABI_SCORE == 0) std::snprintf(reason, size, "%s", ABI_REASON);
  return ABI_SCORE;
}

moereg_status* create(const moereg_moe_weights*, const moereg_routing_params*, const moereg_backend_options*,
                      moereg_backend** out) noexcept {
  *out = nullptr;
  return host->status_create(MOEREG_UNSUPPORTED, "the abitest backend is a registry test fixture and computes nothing");
}

moereg_status* forward(moereg_backend*, const moereg_tensor_view*, const moereg_tensor_view*, const moereg_tensor_view*,
                       moereg_tensor_view*) noexcept {
  return host->status_create(MOEREG_UNSUPPORTED, "no handle");
}

void destroy(moereg_backend*) noexcept {}

// A version 1 table (the slots up to get_extension, none of API 2), as a backend built
// before backend options declares it: the host must keep loading it.
const moereg_backend_api table = {1, "abitest", ABI_VERSION, &probe, &create, &forward, &destroy};

}  // namespace

extern "C" MOEREG_EXPORT const moereg_backend_api* moereg_backend_entry(const moereg_host_api* h) {
  host = h;
  return &table;
}
