// SPDX-License-Identifier: Apache-2.0
// moe_layer.h - one MoE layer of a checkpoint, ready for a backend: experts in the backend
// order (w13 [E, 2I, H] gate rows then up rows, w2 [E, H, I]), shared expert, and the
// family's routing as moereg_routing_params.
//
// Where the checkpoint already stores that order contiguously (transformers_v5, the hub
// layout of qwen3_5_moe) the views point into the mapped files: no copy. Any other layout
// is packed once into buffers this object owns; `packed_bytes` and `load_seconds` say what
// that cost.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moereg/abi/moereg_backend.h"
#include "moereg/plan/decoded_checkpoint.h"

namespace moereg {

struct moe_layer {
  int layer = -1;
  moereg_moe_weights weights{};
  moereg_routing_params routing{};
  std::uint64_t packed_bytes = 0;  // bytes copied into owned buffers (0: all mapped)
  double load_seconds = 0;
  std::string describe;            // "w13 mapped from ..., w2 packed from 8 tensors"
  std::vector<std::unique_ptr<std::byte[]>> owned;
};

// For a backend whose table predates plugin API 3, which cannot read an F8_E4M3 shared
// expert: `w`'s shared expert as BF16, each weight dequantized as `convert --dtype bf16`
// does (q x scale, rounded once), in the returned buffer, which must outlive every use of `w`;
// the shared scales are cleared. Returns null and leaves `w` alone when the shared expert is
// not F8_E4M3.
std::unique_ptr<std::uint16_t[]> shared_expert_to_bf16(moereg_moe_weights& w);

// Throws moereg::error if `layer` holds no experts (naming the MoE layers there are), or if
// a router/shared tensor the family declares is missing.
std::unique_ptr<moe_layer> load_moe_layer(const decoded_checkpoint& decoded, int layer);

}  // namespace moereg
