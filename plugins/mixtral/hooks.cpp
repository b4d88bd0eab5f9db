// SPDX-License-Identifier: Apache-2.0
// Hook library of the mixtral family plugin. One hook: permute_qk, the per-head row order of
// attn_q/attn_k in the `gguf` layout (llama.cpp's `llama` architecture interleaves each head's
// rotary pairs; plugins/common/rotary_qk_rows.h, shared with the mistral plugin's wq/wk).
#include <cstring>
#include <string>

#include "moereg/abi/moereg_hooks.h"
#include "rotary_qk_rows.h"

namespace {

const moereg_host_api* host = nullptr;
const char* const hook_names[] = {"permute_qk", nullptr};

moereg_status* transform(const char* hook, int32_t direction, const char* key, const char* config_json,
                         const moereg_tensor_view* src, moereg_tensor_view* dst) noexcept {
  MOEREG_API_BEGIN
  if (!hook || std::strcmp(hook, "permute_qk") != 0)
    return host->status_create(MOEREG_INVALID_ARGUMENT, (std::string("no hook named '") + (hook ? hook : "") + "'").c_str());
  moereg_plugins::permute_qk(direction, key, config_json, src, dst);
  return nullptr;
  MOEREG_API_END
}

const moereg_hooks_api table = {MOEREG_PLUGIN_API_VERSION, "mixtral", "1.1.0", hook_names, nullptr, nullptr, transform};

}  // namespace

extern "C" MOEREG_EXPORT const moereg_hooks_api* moereg_hooks_entry(const moereg_host_api* h) {
  if (!h || h->api_version < MOEREG_PLUGIN_API_MIN) return nullptr;
  host = h;
  return &table;
}
