// SPDX-License-Identifier: Apache-2.0
// plugins.h - what the plugin registry found, one plugin in detail, and a plugin author's
// checker: the work behind `moereg plugins list | show NAME | check DIR`.
//
//   auto found = moereg::app::list_plugins({{"./my-plugins"}});
//   if (!found) { std::cerr << found.error().message << "\n"; return 1; }
//   for (const auto& p : found.value().plugins)          // in search order
//     std::cout << p.name << " " << p.state << (p.reason.empty() ? "" : ": " + p.reason) << "\n";
//
//   auto c = moereg::app::check_plugin({}, "vendor/olmoe");
//   if (c && !c.value().problems.empty())                   // "plugin.yaml:12:5: ..." each
//     for (const auto& p : c.value().problems) std::cerr << p << "\n";
//
// Which library serves a hook is answered by the catalog's one rule (the plugin, or the
// nearest ancestor through `extends`, whose manifest lists the hook), the rule conversions use.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "moereg/app/export.h"
#include "moereg/app/result.h"

namespace moereg::app {

struct plugins_request {
  std::vector<std::string> plugin_paths;  // searched first, in order (as open_request's)
};

// A directory searched, in order, with where it came from.
struct plugin_search_dir {
  std::string path;
  std::string source;  // "--plugin-path", "MOEREG_PLUGIN_PATH" or "installed"
  bool exists = false;
};

// One plugin (family) or backend the registry saw, usable or not.
// One layout of a family as `plugins show` describes it (after `extends`).
struct plugin_layout {
  std::string name;
  std::vector<std::string> aliases;  // other names convert --to accepts for it
  std::string description;           // plugin.yaml's, may be empty
  std::string container;             // "safetensors" or "gguf"
};

struct plugin_entry {
  std::string name;
  std::string kind;     // "family" or "backend"
  std::string version;  // empty when the manifest could not be read
  int api_version = 0;  // 0 when unknown
  std::string state;    // "loaded", "available", "refused" or "shadowed"
  std::string reason;   // why refused or shadowed: "file:line: what, expected X, found Y"
  std::string source;   // "--plugin-path", "MOEREG_PLUGIN_PATH" or "installed"
  std::string path;     // a family's directory, a backend's library
  std::string directory, manifest, library;
  std::vector<std::string> model_types;  // family: config.json model_type values claimed
  std::vector<std::string> hooks;        // family: hooks its library must export
  int probe_score = -1;                  // backend: its probe's score 0..100; -1 = not probed

  // Filled by show_plugin for a usable family (empty otherwise).
  std::string description, extends, library_sha256;
  std::vector<std::string> layouts;            // declared in its own plugin.yaml
  std::vector<plugin_layout> layout_details;   // every layout it has, inherited ones too
  std::vector<std::pair<std::string, std::string>> hook_plugins;  // hook -> plugin whose library serves it
};

struct plugin_listing {
  std::vector<plugin_search_dir> search_dirs;
  std::vector<plugin_entry> plugins;  // in search order; every library loaded and backend probed
  std::string json;                   // as `moereg plugins list --json` prints it
};

// Every plugin and backend found. Loads each hook library and probes each backend so that
// every refusal a load can reveal (API version, entry symbol, hook names) is listed.
MOEREG_API result<plugin_listing> list_plugins(const plugins_request& request) noexcept;

struct plugin_details {
  std::vector<plugin_entry> entries;  // every plugin of that name, the usable one and any shadowed or refused
  std::string json;                   // as `moereg plugins show NAME --json` prints it
};

// The plugins named `name`; an input problem naming the directories searched when there is none.
MOEREG_API result<plugin_details> show_plugin(const plugins_request& request, const std::string& name) noexcept;

struct plugin_check_report {
  std::string directory;
  std::string name, version, library;  // from the manifest, when readable
  int api_version = 0;
  bool library_loaded = false;
  // Every problem at once, each "file:line:column: what, expected X" (a key inherited through
  // `extends` names the file and line it was written on). Empty = the plugin is good.
  std::vector<std::string> problems;
  std::vector<std::string> notes;  // worth knowing, not wrong
  std::string json;                // as `moereg plugins check DIR --json` prints it
};

// Checks the plugin in `directory` (its manifest, its library if any, and the layout engine's
// reading of it, resolved against the other plugins found so that `extends` works). A plugin
// with problems is a successful check: look at `problems`; a problem is returned only when the
// check itself cannot run.
MOEREG_API result<plugin_check_report> check_plugin(const plugins_request& request, const std::string& directory) noexcept;

}  // namespace moereg::app
