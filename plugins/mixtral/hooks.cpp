// Hook library of the mixtral family plugin. Everything this family needs is said in
// plugin.yaml, so it exports no hooks: the library is the unit a vendor ships and versions,
// and it is where a hook goes when YAML cannot say something.
#include "moereg/abi/moereg_hooks.h"

namespace {
const char* const hook_names[] = {nullptr};

const moereg_hooks_api table = {
    MOEREG_PLUGIN_API_VERSION, "mixtral", "1.0.0", hook_names,
    nullptr,  // read_config
    nullptr,  // write_config
    nullptr,  // transform
};
}  // namespace

extern "C" MOEREG_EXPORT const moereg_hooks_api* moereg_hooks_entry(const moereg_host_api* host) {
  if (!host || host->api_version < MOEREG_PLUGIN_API_MIN) return nullptr;
  return &table;
}
