// SPDX-License-Identifier: Apache-2.0
// family_without_hooks.h - the hook library of a family whose plugin.yaml says everything.
//
// Such a library exports the table with its identity and no hooks: it is still the unit a
// vendor ships and versions, and the place a hook goes the day YAML cannot say something.
// Use once, in the plugin's hooks.cpp:  MOEREG_FAMILY_WITHOUT_HOOKS("qwen3_moe", "1.0.0")
#pragma once

#include "moereg/abi/moereg_hooks.h"

#define MOEREG_FAMILY_WITHOUT_HOOKS(NAME, VERSION)                                                         \
  namespace {                                                                                              \
  const char* const moereg_no_hook_names[] = {nullptr};                                                    \
  const moereg_hooks_api moereg_family_table = {MOEREG_PLUGIN_API_VERSION, NAME, VERSION, moereg_no_hook_names, \
                                                nullptr, nullptr, nullptr};                                 \
  }                                                                                                        \
  extern "C" MOEREG_EXPORT const moereg_hooks_api* moereg_hooks_entry(const moereg_host_api* host) {        \
    if (!host || host->api_version < MOEREG_PLUGIN_API_MIN) return nullptr;                                \
    return &moereg_family_table;                                                                           \
  }
