// SPDX-License-Identifier: Apache-2.0
// plugin_registry.h - finds, vets and loads moereg plugins: family plugins (a directory
// with plugin.yaml and optionally a hook library) and backend libraries.
//
// Search order: --plugin-path DIRs (in the order given), then MOEREG_PLUGIN_PATH
// (colon-separated), then the plugins installed beside the binary
// (<exe>/../lib/moereg/plugins and <exe>/../lib/moereg/backends). In each directory an
// `abi-<N>` subdirectory is preferred when present. The first plugin of a name wins; later
// ones are recorded as shadowed.
//
// Every candidate gets a record with a state and a reason; a refusal is a state here, not
// only a log line, and `moereg plugins list` prints them all.
//
// Trust: a plugin is data and code someone could have planted. Its plugin.yaml, its library,
// its directory and every directory between it and the search directory it was found in
// (that one included) must be owned by root or the current user and not be writable by
// group or others; otherwise the plugin is refused before its manifest is used. A plugin
// refused under --plugin-path or MOEREG_PLUGIN_PATH does not silently give way to an
// installed one of the same family: requested_refusals() lists it, and the catalog refuses
// to resolve its family.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "moereg/abi/moereg_backend.h"
#include "moereg/abi/moereg_hooks.h"

namespace moereg {

enum class plugin_kind { family, backend };
enum class plugin_state { available, loaded, refused, shadowed };

const char* to_string(plugin_state s);
const char* to_string(plugin_kind k);

struct plugin_record {
  plugin_kind kind = plugin_kind::family;
  std::string name;
  std::string version;
  int api_version = 0;
  std::string directory;      // family: the plugin directory; backend: the directory holding the library
  std::string manifest_path;  // family: .../plugin.yaml; backend: empty
  std::string library_path;   // hook or backend library, empty for a YAML-only family plugin
  std::string source;         // "--plugin-path", "MOEREG_PLUGIN_PATH" or "installed"
  plugin_state state = plugin_state::available;
  std::string reason;         // why refused / shadowed: "file:line: what, expected X, found Y"
  std::string name_at, hooks_at;  // family: "plugin.yaml:line" of its name and hooks keys
  std::vector<std::string> model_types;  // family: config.json model_type values claimed
  std::vector<std::string> hooks;        // family: hook names the library must export
  int probe_score = -1;                  // backend: what probe returned (0..100); -1 = not probed
};

// A directory searched, in order, with where it came from.
struct search_dir {
  std::string path;
  std::string source;
  bool exists = false;
  std::string trust_root;  // the directory as given (path may be its abi-<N> subdirectory)
};

struct registry_options {
  std::vector<std::string> plugin_paths;     // --plugin-path, in order
  bool use_environment = true;               // read MOEREG_PLUGIN_PATH
  std::string installed_root;                // <exe>/../lib/moereg; empty = derive from /proc/self/exe
  std::vector<std::string> forbidden_dirs;   // never load code from these (the checkpoint's own dir)
};

class plugin_registry {
 public:
  explicit plugin_registry(const registry_options& options);
  ~plugin_registry();
  plugin_registry(const plugin_registry&) = delete;
  plugin_registry& operator=(const plugin_registry&) = delete;

  // Every candidate seen, in search order, including refused and shadowed ones.
  // Backends are probed (loaded) lazily by backends(), find_backend(), backend() or
  // load_all(); until then their records are `available` with probe_score -1.
  const std::vector<plugin_record>& records() const;
  const std::vector<search_dir>& search_dirs() const;

  // Loads every hook library and probes every backend, so that records() shows every
  // refusal a load can reveal (API version, entry symbol, hook names). Never throws.
  void load_all();

  // Usable (available or loaded) family plugins / backends.
  std::vector<const plugin_record*> families() const;
  std::vector<const plugin_record*> backends() const;
  const plugin_record* find_family(const std::string& name) const;
  const plugin_record* find_backend(const std::string& name) const;

  // Family plugins found under --plugin-path or MOEREG_PLUGIN_PATH and refused (not those
  // merely shadowed): the user asked for them, so their families must not fall back.
  std::vector<const plugin_record*> requested_refusals() const;

  // Loads (once) and returns the hook table of a family plugin with a library; throws
  // moereg::error naming the file if the library is refused (trust, sha256, API version,
  // hook names disagreeing with the manifest). nullptr for a YAML-only plugin. Safe to call
  // from several threads at once (conversion workers running hooks).
  const moereg_hooks_api* hooks(const plugin_record& family);

  // Loads (once) and returns a backend's table; throws moereg::error with the reason. Safe
  // to call from several threads at once (the first call probes every backend).
  const moereg_backend_api* backend(const plugin_record& backend);

  // Unload order: the registry owns every library handle for its whole life. Destroy each
  // moereg_backend made through backend() (its destroy slot) before the registry dies.

  // The host services passed to every plugin entry point.
  static const moereg_host_api* host_api();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// Turn a status returned by a plugin slot into a moereg::error (prefixed with who) and free it.
// No-op for nullptr (success).
void throw_if_error(moereg_status* status, const std::string& who);
// The code and message of a status a plugin returned, which is freed (NULL: MOEREG_OK and "").
std::pair<int32_t, std::string> take_status(moereg_status* status);

}  // namespace moereg
