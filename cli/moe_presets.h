// SPDX-License-Identifier: Apache-2.0
// moe_presets.h - the layer shapes `moe bench` times: real models' E, H, I, top-k, shared
// expert and routing, with synthetic weights.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "moereg/abi/moereg_backend.h"

namespace moereg::cli {

struct moe_preset {
  const char* name;
  std::int64_t E, H, I, K, Is;  // Is = 0: no shared expert
  moereg_routing_params routing;  // router views filled later
  const char* note;
};

const std::vector<moe_preset>& presets();

// The preset of that name; a usage error listing the names otherwise.
const moe_preset& find_preset(const std::string& name);

}  // namespace moereg::cli
