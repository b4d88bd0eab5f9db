// SPDX-License-Identifier: Apache-2.0
// Hook library of the qwen3_5_moe family plugin: the byte rewrites of its `gguf` layout
// (llama.cpp's qwen35moe, as convert_hf_to_gguf.py writes it). Three hooks:
//   norm_plus_one  every `1 + w` RMSNorm weight stored as 1 + w (gguf_values.h)
//   ssm_a          A_log stored as -exp(A_log), value heads tiled (gguf_values.h)
//   v_head_order   the linear attention's value heads tiled (linear_attn_heads.h)
// DECODE inverts ENCODE exactly; ENCODE refuses a value it could not give back.
#include <cstring>
#include <string>

#include "gguf_values.h"
#include "linear_attn_heads.h"
#include "moereg/abi/moereg_hooks.h"

namespace {

const moereg_host_api* host = nullptr;
const char* const hook_names[] = {"norm_plus_one", "ssm_a", "v_head_order", nullptr};

moereg_status* transform(const char* hook, int32_t direction, const char* key, const char* config_json,
                         const moereg_tensor_view* src, moereg_tensor_view* dst) noexcept {
  MOEREG_API_BEGIN
  const std::string name = hook ? hook : "", k = key ? key : "";
  if (!src || !dst) return host->status_create(MOEREG_INVALID_ARGUMENT, (k + ": " + name + ": missing tensor view").c_str());
  if (direction != MOEREG_DECODE && direction != MOEREG_ENCODE)
    return host->status_create(MOEREG_INVALID_ARGUMENT, (k + ": unknown direction " + std::to_string(direction)).c_str());
  if (name == "norm_plus_one") qwen35_hooks::norm_plus_one(direction, k, src, dst);
  else if (name == "ssm_a") qwen35_hooks::ssm_a(direction, k, config_json, src, dst);
  else if (name == "v_head_order") qwen35_hooks::v_head_order(direction, k, config_json, src, dst);
  else return host->status_create(MOEREG_INVALID_ARGUMENT, ("no hook named '" + name + "'").c_str());
  return nullptr;
  MOEREG_API_END
}

const moereg_hooks_api table = {MOEREG_PLUGIN_API_VERSION, "qwen3_5_moe", "1.1.0", hook_names, nullptr, nullptr, transform};

}  // namespace

extern "C" MOEREG_EXPORT const moereg_hooks_api* moereg_hooks_entry(const moereg_host_api* h) {
  if (!h || h->api_version < MOEREG_PLUGIN_API_MIN) return nullptr;
  host = h;
  return &table;
}
