// SPDX-License-Identifier: Apache-2.0
#include "plugin_library.h"

#include <algorithm>
#include <array>
#include <boost/system/system_error.hpp>

#include "moereg/registry/plugin_registry.h"

namespace moereg::detail {

namespace {

std::string api_range() {
  return std::to_string(MOEREG_PLUGIN_API_MIN) + ".." + std::to_string(MOEREG_PLUGIN_API_VERSION);
}

// dlopen with RTLD_NOW so a missing dependency is a refusal now, not a crash at first call;
// RTLD_LOCAL so two plugins' symbols never resolve into each other.
std::string open_library(const std::string& path, std::unique_ptr<boost::dll::shared_library>& out) {
  try {
    out = std::make_unique<boost::dll::shared_library>(
        boost::dll::fs::path(path), boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    return "";
  } catch (const boost::system::system_error& e) {
    return path + ": cannot load the library: " + e.what();
  }
}

template <class Fn>
Fn* resolve(boost::dll::shared_library& lib, const char* symbol) {
  if (!lib.has(symbol)) return nullptr;
  return &lib.get<Fn>(symbol);
}

std::string check_version(const std::string& path, uint32_t version) {
  if (version < MOEREG_PLUGIN_API_MIN || version > MOEREG_PLUGIN_API_VERSION)
    return path + ": plugin API " + std::to_string(version) + ", this moereg accepts " + api_range();
  return "";
}

std::string hook_differences(const std::string& path, const moereg_hooks_api& t, const std::vector<std::string>& listed,
                             const std::string& hooks_at) {
  std::vector<std::string> exported;
  for (const char* const* h = t.hooks; h && *h; ++h) exported.emplace_back(*h);
  std::string out;
  auto add = [&](const std::string& s) { out += (out.empty() ? "" : "; ") + s; };
  for (const auto& h : listed)
    if (std::find(exported.begin(), exported.end(), h) == exported.end())
      add(hooks_at + ": hook '" + h + "' is listed in plugin.yaml but not exported by " + path);
  for (const auto& h : exported)
    if (std::find(listed.begin(), listed.end(), h) == listed.end())
      add(path + ": hook '" + h + "' is exported but not listed in plugin.yaml 'hooks' (" + hooks_at + ")");
  return out;
}

}  // namespace

std::string open_hook_library(const std::string& path, const std::string& manifest_name, const std::string& manifest_name_at,
                              const std::vector<std::string>& manifest_hooks, const std::string& hooks_at,
                              hook_library& out) {
  if (std::string r = open_library(path, out.handle); !r.empty()) return r;
  auto* entry = resolve<const moereg_hooks_api*(const moereg_host_api*)>(*out.handle, MOEREG_HOOKS_ENTRY_SYMBOL);
  if (!entry)
    return path + ": no symbol " MOEREG_HOOKS_ENTRY_SYMBOL ", expected a moereg hook library exporting it (extern \"C\" MOEREG_EXPORT)";
  const moereg_hooks_api* t = entry(plugin_registry::host_api());
  if (!t)
    return path + ": " MOEREG_HOOKS_ENTRY_SYMBOL " returned NULL (the library refuses host plugin API " +
           std::to_string(MOEREG_PLUGIN_API_VERSION) + ")";
  if (std::string r = check_version(path, t->api_version); !r.empty()) return r;
  std::string table_name = t->name ? t->name : "";
  if (table_name != manifest_name)
    return path + ": library says its plugin is '" + table_name + "', expected '" + manifest_name + "' as " +
           manifest_name_at + " names it";
  if (std::string r = hook_differences(path, *t, manifest_hooks, hooks_at); !r.empty()) return r;
  out.table = t;
  return "";
}

std::string open_backend_library(const std::string& path, const std::string& expected_name, backend_library& out) {
  if (std::string r = open_library(path, out.handle); !r.empty()) return r;
  auto* entry = resolve<const moereg_backend_api*(const moereg_host_api*)>(*out.handle, MOEREG_BACKEND_ENTRY_SYMBOL);
  if (!entry)
    return path + ": no symbol " MOEREG_BACKEND_ENTRY_SYMBOL
                  ", expected a moereg backend library exporting it (extern \"C\" MOEREG_EXPORT)";
  const moereg_backend_api* t = entry(plugin_registry::host_api());
  if (!t)
    return path + ": " MOEREG_BACKEND_ENTRY_SYMBOL " returned NULL (the backend refuses host plugin API " +
           std::to_string(MOEREG_PLUGIN_API_VERSION) + ")";
  if (std::string r = check_version(path, t->api_version); !r.empty()) return r;
  std::string table_name = t->name ? t->name : "";
  if (table_name != expected_name)
    return path + ": backend says its name is '" + table_name + "', expected '" + expected_name + "' from the file name";
  if (!t->probe || !t->create || !t->forward || !t->destroy)
    return path + ": required slot missing, expected probe, create, forward and destroy to be set";
  std::array<char, 512> reason{};
  out.score = t->probe(reason.data(), reason.size());
  reason.back() = '\0';
  out.probe_reason = reason.data();
  out.table = t;
  return "";
}

}  // namespace moereg::detail
