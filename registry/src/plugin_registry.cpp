// SPDX-License-Identifier: Apache-2.0
// Discovery: walk the search directories in order, make a record for every candidate, and
// decide statically (manifest, trust, sha256) which one of each name is used. Libraries
// load later, on demand (plugin_library.cpp).
#include "moereg/registry/plugin_registry.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/dll/runtime_symbol_info.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>

#include "moereg/base/error.h"
#include "moereg/registry/plugin_identity.h"
#include "moereg/registry/plugin_trust.h"
#include "moereg/registry/sha256.h"
#include "plugin_library.h"

#ifndef MOEREG_INSTALL_LIBDIR
#define MOEREG_INSTALL_LIBDIR "lib"
#endif

namespace moereg {

namespace fs = std::filesystem;

const char* to_string(plugin_state s) {
  switch (s) {
    case plugin_state::available: return "available";
    case plugin_state::loaded: return "loaded";
    case plugin_state::refused: return "refused";
    case plugin_state::shadowed: return "shadowed";
  }
  return "?";
}

const char* to_string(plugin_kind k) { return k == plugin_kind::family ? "family" : "backend"; }

struct plugin_registry::impl {
  registry_options options;
  std::vector<search_dir> dirs;
  std::vector<plugin_record> records;
  std::vector<std::size_t> dir_of;  // records[i] came from dirs[dir_of[i]]
  std::map<std::size_t, detail::hook_library> hook_libs;
  std::mutex hook_libs_mutex;  // hooks() runs on the executor's worker threads
  std::map<std::size_t, detail::backend_library> backend_libs;
  std::once_flag backends_probed;  // probing writes records; once, whichever thread asks first

  void add_dir(const std::string& path, const std::string& source);
  void scan(std::size_t dir_index);
  void add_family(const fs::path& plugin_dir, std::size_t dir_index);
  void add_backend(const fs::path& file, const std::string& name, std::size_t dir_index);
  void add_unavailable(const fs::path& file, std::size_t dir_index);
  void resolve_family_shadows();
  void probe_backends();
  void probe_backends_now();
  std::size_t index_of(const plugin_record& r) const;
};

namespace {

bool usable(const plugin_record& r) { return r.state == plugin_state::available || r.state == plugin_state::loaded; }

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : "; ") + s;
  return out;
}

std::vector<fs::path> sorted_entries(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) out.push_back(it->path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string default_installed_root() {
  std::error_code ec;
  // Inside libmoereg.so (<prefix>/<libdir>/libmoereg.so), the plugins installed with it are
  // <libdir>/moereg, wherever the program using it lives.
  fs::path module_dir;
  try {
    module_dir = boost::dll::this_line_location().parent_path().string();
  } catch (const std::exception&) {  // not found: the executable's directory below is used
  }
  fs::path exe_dir = boost::dll::program_location().parent_path().string();
  if (!module_dir.empty() && module_dir != exe_dir && fs::is_directory(module_dir / "moereg", ec))
    return (module_dir / "moereg").lexically_normal().string();
  fs::path candidate = exe_dir / ".." / MOEREG_INSTALL_LIBDIR / "moereg";
  if (fs::is_directory(candidate, ec)) return candidate.lexically_normal().string();
  return (exe_dir / ".." / "lib" / "moereg").lexically_normal().string();
}

}  // namespace

void plugin_registry::impl::add_dir(const std::string& path, const std::string& source) {
  std::error_code ec;
  fs::path p = path;
  // An abi-<N> subdirectory holds plugins built for this API; it lets several releases'
  // plugins live side by side in one directory (GDAL's convention).
  fs::path abi = p / ("abi-" + std::to_string(MOEREG_PLUGIN_API_VERSION));
  std::string root = p.string();
  if (fs::is_directory(abi, ec)) p = abi;
  dirs.push_back({p.string(), source, fs::is_directory(p, ec), root});
}

void plugin_registry::impl::scan(std::size_t d) {
  if (!dirs[d].exists) return;
  fs::path dir = dirs[d].path;
  std::error_code ec;
  if (fs::is_regular_file(dir / "plugin.yaml", ec)) {
    add_family(dir, d);
  } else {
    for (const auto& sub : sorted_entries(dir))
      if (fs::is_directory(sub, ec) && fs::is_regular_file(sub / "plugin.yaml", ec)) add_family(sub, d);
  }
  static const std::regex backend_file("libmoereg_backend_([a-z0-9_]+)(-[A-Za-z0-9_.+]+)?\\.so");
  static const std::regex unavailable_file("([a-z0-9_]+)\\.unavailable");
  for (const fs::path& where : {dir, dir / "backends"}) {
    if (!fs::is_directory(where, ec)) continue;
    for (const auto& f : sorted_entries(where)) {
      std::smatch m;
      std::string file = f.filename().string();
      if (std::regex_match(file, m, backend_file) && fs::is_regular_file(f, ec))
        add_backend(f, m[1].str(), d);
      else if (std::regex_match(file, m, unavailable_file) && fs::is_regular_file(f, ec))
        add_unavailable(f, d);
    }
  }
}

void plugin_registry::impl::add_family(const fs::path& plugin_dir, std::size_t d) {
  plugin_record r;
  r.kind = plugin_kind::family;
  r.directory = plugin_dir.string();
  r.manifest_path = (plugin_dir / "plugin.yaml").string();
  r.source = dirs[d].source;
  r.name = plugin_dir.filename().string();
  auto refuse = [&](std::string reason) {
    r.state = plugin_state::refused;
    r.reason = std::move(reason);
    records.push_back(std::move(r));
    dir_of.push_back(d);
  };
  // Checked before the manifest is even read: a checkpoint could ship a plugin.yaml.
  if (std::string why = forbidden_location_problem(r.directory, options.forbidden_dirs, "plugin directory"); !why.empty())
    return refuse(why);
  // A manifest anyone could have written decides which bytes go where as surely as a
  // library does: the same rules, before its content is used. Its identity is still read,
  // so that the refusal names the family it would have served.
  std::string untrusted = manifest_trust_problem(r.manifest_path, dirs[d].trust_root);
  plugin_identity m = read_plugin_identity(r.manifest_path);
  if (!m.name.empty()) r.name = m.name;
  r.version = m.version;
  r.api_version = m.api_version;
  r.name_at = m.where("name");
  r.hooks_at = m.where("hooks");
  r.model_types = m.model_types;
  r.hooks = m.hooks;
  if (!untrusted.empty()) return refuse(untrusted);
  if (!m.errors.empty()) return refuse(join(m.errors));
  if (m.library.empty()) {
    r.state = plugin_state::loaded;  // YAML alone: nothing more to load
  } else {
    r.library_path = (plugin_dir / m.library).string();
    if (std::string why = library_trust_problem(r.library_path); !why.empty()) return refuse(why);
    if (!m.library_sha256.empty()) {
      std::string found = sha256_file_hex(r.library_path);
      if (found != m.library_sha256)
        return refuse(m.where("library_sha256") + ": library_sha256 mismatch for " + r.library_path + ", expected " +
                      m.library_sha256 + ", found " + found);
    }
  }
  records.push_back(std::move(r));
  dir_of.push_back(d);
}

void plugin_registry::impl::add_backend(const fs::path& file, const std::string& name, std::size_t d) {
  plugin_record r;
  r.kind = plugin_kind::backend;
  r.name = name;
  r.directory = file.parent_path().string();
  r.library_path = file.string();
  r.source = dirs[d].source;
  if (std::string why = forbidden_location_problem(r.library_path, options.forbidden_dirs, "backend library"); !why.empty()) {
    r.state = plugin_state::refused;
    r.reason = why;
  } else if (std::string trust = library_trust_problem(r.library_path); !trust.empty()) {
    r.state = plugin_state::refused;
    r.reason = trust;
  }
  records.push_back(std::move(r));
  dir_of.push_back(d);
}

void plugin_registry::impl::add_unavailable(const fs::path& file, std::size_t d) {
  plugin_record r;
  r.kind = plugin_kind::backend;
  r.name = file.stem().string();
  r.directory = file.parent_path().string();
  r.library_path = file.string();
  r.source = dirs[d].source;
  r.state = plugin_state::refused;
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  r.reason = "backend " + r.name + " not built: " + (line.empty() ? "(no reason given in " + file.string() + ")" : line);
  records.push_back(std::move(r));
  dir_of.push_back(d);
}

void plugin_registry::impl::resolve_family_shadows() {
  std::map<std::string, std::size_t> winner;
  for (std::size_t i = 0; i < records.size(); ++i) {
    plugin_record& r = records[i];
    if (r.kind != plugin_kind::family || !usable(r)) continue;
    auto [it, first] = winner.emplace(r.name, i);
    if (!first) {
      r.state = plugin_state::shadowed;
      r.reason = "shadowed by " + records[it->second].directory;
    }
  }
}

void plugin_registry::impl::probe_backends() { std::call_once(backends_probed, [this] { probe_backends_now(); }); }

void plugin_registry::impl::probe_backends_now() {
  for (std::size_t i = 0; i < records.size(); ++i) {
    plugin_record& r = records[i];
    if (r.kind != plugin_kind::backend || r.state != plugin_state::available) continue;
    detail::backend_library lib;
    std::string why = detail::open_backend_library(r.library_path, r.name, lib);
    if (lib.table) {
      r.version = lib.table->version ? lib.table->version : "";
      r.api_version = static_cast<int>(lib.table->api_version);
    }
    r.probe_score = lib.score;
    if (!why.empty()) {
      r.state = plugin_state::refused;
      r.reason = why;
      continue;
    }
    if (lib.score <= 0) {
      r.state = plugin_state::refused;
      r.reason = r.library_path + ": probe says it cannot run here (score 0): " +
                 (lib.probe_reason.empty() ? "no reason given" : lib.probe_reason);
    } else {
      r.state = plugin_state::loaded;
    }
    backend_libs.emplace(i, std::move(lib));
  }
  // Per name: the first search directory holding a runnable variant wins, and within it
  // the best probe score (ties: the first file in name order).
  std::map<std::string, std::size_t> winner;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const plugin_record& r = records[i];
    if (r.kind != plugin_kind::backend || !usable(r)) continue;
    auto [it, first] = winner.emplace(r.name, i);
    const plugin_record& w = records[it->second];
    if (!first && dir_of[i] == dir_of[it->second] && r.probe_score > w.probe_score) it->second = i;
  }
  for (std::size_t i = 0; i < records.size(); ++i) {
    plugin_record& r = records[i];
    if (r.kind != plugin_kind::backend || !usable(r) || winner[r.name] == i) continue;
    const plugin_record& w = records[winner[r.name]];
    r.state = plugin_state::shadowed;
    r.reason = dir_of[i] == dir_of[winner[r.name]]
                   ? "outscored by " + w.library_path + " (probe score " + std::to_string(w.probe_score) + " > " +
                         std::to_string(r.probe_score) + ")"
                   : "shadowed by " + w.library_path;
  }
}

std::size_t plugin_registry::impl::index_of(const plugin_record& r) const {
  if (records.empty() || &r < records.data() || &r >= records.data() + records.size())
    throw usage_error("plugin_registry: the record passed does not belong to this registry");
  return static_cast<std::size_t>(&r - records.data());
}

plugin_registry::plugin_registry(const registry_options& options) : impl_(std::make_unique<impl>()) {
  impl_->options = options;
  for (const auto& p : options.plugin_paths) {
    std::error_code ec;
    if (!fs::is_directory(p, ec)) throw error("--plugin-path " + p + ": not a directory, expected a plugin directory");
    impl_->add_dir(p, "--plugin-path");
  }
  if (options.use_environment)
    if (const char* env = std::getenv("MOEREG_PLUGIN_PATH")) {
      std::string s = env;
      for (std::size_t start = 0; start <= s.size();) {
        std::size_t end = s.find(':', start);
        if (end == std::string::npos) end = s.size();
        if (end > start) impl_->add_dir(s.substr(start, end - start), "MOEREG_PLUGIN_PATH");
        start = end + 1;
      }
    }
  std::string root = options.installed_root.empty() ? default_installed_root() : options.installed_root;
  impl_->add_dir((fs::path(root) / "plugins").string(), "installed");
  impl_->add_dir((fs::path(root) / "backends").string(), "installed");
  for (std::size_t d = 0; d < impl_->dirs.size(); ++d) {
    if (!impl_->dirs[d].exists && impl_->dirs[d].source == "MOEREG_PLUGIN_PATH")
      spdlog::warn("MOEREG_PLUGIN_PATH: {} is not a directory; skipped", impl_->dirs[d].path);
    impl_->scan(d);
  }
  impl_->resolve_family_shadows();
}

plugin_registry::~plugin_registry() = default;

const std::vector<plugin_record>& plugin_registry::records() const { return impl_->records; }
const std::vector<search_dir>& plugin_registry::search_dirs() const { return impl_->dirs; }

std::vector<const plugin_record*> plugin_registry::families() const {
  std::vector<const plugin_record*> out;
  for (const auto& r : impl_->records)
    if (r.kind == plugin_kind::family && usable(r)) out.push_back(&r);
  return out;
}

std::vector<const plugin_record*> plugin_registry::requested_refusals() const {
  std::vector<const plugin_record*> out;
  for (const auto& r : impl_->records)
    if (r.kind == plugin_kind::family && r.state == plugin_state::refused && r.source != "installed") out.push_back(&r);
  return out;
}

std::vector<const plugin_record*> plugin_registry::backends() const {
  impl_->probe_backends();
  std::vector<const plugin_record*> out;
  for (const auto& r : impl_->records)
    if (r.kind == plugin_kind::backend && usable(r)) out.push_back(&r);
  return out;
}

const plugin_record* plugin_registry::find_family(const std::string& name) const {
  for (const auto* r : families())
    if (r->name == name) return r;
  return nullptr;
}

const plugin_record* plugin_registry::find_backend(const std::string& name) const {
  for (const auto* r : backends())
    if (r->name == name) return r;
  return nullptr;
}

const moereg_hooks_api* plugin_registry::hooks(const plugin_record& family) {
  std::size_t i = impl_->index_of(family);
  plugin_record& r = impl_->records[i];
  if (r.kind != plugin_kind::family) throw usage_error("plugin_registry::hooks: '" + r.name + "' is a backend");
  std::lock_guard<std::mutex> lock(impl_->hook_libs_mutex);  // r.state and hook_libs change below
  if (r.state == plugin_state::refused || r.state == plugin_state::shadowed)
    throw error("plugin '" + r.name + "' " + to_string(r.state) + ": " + r.reason);
  if (r.library_path.empty()) return nullptr;
  if (auto it = impl_->hook_libs.find(i); it != impl_->hook_libs.end()) return it->second.table;
  detail::hook_library lib;
  std::string why = detail::open_hook_library(r.library_path, r.name, r.name_at, r.hooks, r.hooks_at, lib);
  if (!why.empty()) {
    r.state = plugin_state::refused;
    r.reason = why;
    throw error("plugin '" + r.name + "' refused: " + why);
  }
  r.state = plugin_state::loaded;
  r.api_version = static_cast<int>(lib.table->api_version);
  const moereg_hooks_api* table = lib.table;
  impl_->hook_libs.emplace(i, std::move(lib));
  return table;
}

const moereg_backend_api* plugin_registry::backend(const plugin_record& backend) {
  impl_->probe_backends();
  std::size_t i = impl_->index_of(backend);
  const plugin_record& r = impl_->records[i];
  if (r.kind != plugin_kind::backend) throw usage_error("plugin_registry::backend: '" + r.name + "' is a family plugin");
  if (!usable(r)) throw error("backend '" + r.name + "' " + to_string(r.state) + ": " + r.reason);
  return impl_->backend_libs.at(i).table;
}

void plugin_registry::load_all() {
  impl_->probe_backends();
  for (auto& r : impl_->records) {
    if (r.kind != plugin_kind::family || r.state != plugin_state::available) continue;
    try {
      hooks(r);
    } catch (const error&) {
      // The refusal is now in the record.
    }
  }
}

}  // namespace moereg
