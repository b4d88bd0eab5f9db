// SPDX-License-Identifier: Apache-2.0
// session.h - (in-tree, not installed) a checkpoint opened as a model: the plugins found, the family that
// claims it, its dimensions and the layout it is stored in. Shared by convert, inspect,
// verify and moe run, so every command detects families and layouts the same way.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "moereg/checkpoint/checkpoint.h"
#include "moereg/app/model.h"
#include "moereg/exec/executor.h"
#include "moereg/layout/family_catalog.h"
#include "moereg/plan/decoded_checkpoint.h"
#include "moereg/registry/plugin_registry.h"

namespace moereg::app {

struct session_request {
  std::string checkpoint;
  std::string family;       // a plugin name or a model_type; empty = from config.json
  std::string from_layout;  // empty = detect
  std::string to_layout;    // the conversion target, if any: the family chosen must offer it
  std::vector<std::string> plugin_paths;
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
  // The plugin whose loaded library serves `hook`, by the catalog's one rule
  // (family_spec::hook_plugins); throws moereg::error naming the hook when none does.
  std::pair<const plugin_record*, const moereg_hooks_api*> hook_library(const std::string& hook) const;
};

// The registry for plugin_paths (searched before MOEREG_PLUGIN_PATH and the installed
// plugins). `forbidden_dirs` are directories no plugin code may be loaded from: pass the
// checkpoint directories the job reads.
std::unique_ptr<plugin_registry> make_registry(const std::vector<std::string>& plugin_paths,
                                               const std::vector<std::string>& forbidden_dirs = {});

// Build the catalog of family plugins the registry found.
family_catalog make_catalog(plugin_registry& registry);

// Open, identify and detect. Throws moereg::error with what is unknown and how to fix it.
model_session open_session(const session_request& request);

// What open_model() reports about an open session (model.cpp), and the tensor list alone.
model_info describe_model(const model_session& session);
void list_tensors(const checkpoint& ckpt, model_info& info);

// "known model types: qwen3_moe, ... To add a family, write a plugin.yaml (docs/plugin-authoring.md ...)"
std::string known_families_hint(const family_catalog& catalog);

}  // namespace moereg::app
