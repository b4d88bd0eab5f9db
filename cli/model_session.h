// SPDX-License-Identifier: Apache-2.0
// model_session.h - a checkpoint opened as a model: the plugins found, the family that
// claims it, its dimensions and the layout it is stored in. Shared by convert, inspect,
// verify and moe run, so every command detects families and layouts the same way.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "command.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/exec/executor.h"
#include "moereg/layout/family_catalog.h"
#include "moereg/plan/decoded_checkpoint.h"
#include "moereg/registry/plugin_registry.h"

namespace moereg::cli {

struct session_request {
  std::string checkpoint;
  std::string family;       // --family: a plugin name or a model_type; empty = from config.json
  std::string from_layout;  // --from; empty = detect
  std::string to_layout;    // the conversion target, if any: the family chosen must offer it
};

struct model_session {
  std::unique_ptr<plugin_registry> registry;
  family_catalog catalog;
  std::unique_ptr<checkpoint> ckpt;
  std::string model_type;
  family_spec spec;
  const layout_spec* layout = nullptr;
  model_dims dims;
  bool native_config = false;  // the config was made from a native file by a hook

  // Runs hooks through the library of the plugin (or ancestor) that lists them.
  hook_runner hooks();
};

// Build the catalog of family plugins the registry found.
family_catalog make_catalog(plugin_registry& registry);

// Open, identify and detect. Throws moereg::error with what is unknown and how to fix it.
model_session open_model(const session_request& request, const po::variables_map& vm);

// "known model types: qwen3_moe, ... To add a family, write a plugin.yaml (docs/plugin-authoring.md ...)"
std::string known_families_hint(const family_catalog& catalog);

}  // namespace moereg::cli
