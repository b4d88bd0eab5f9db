// SPDX-License-Identifier: Apache-2.0
#include "session.h"

#include <filesystem>

#include "doc_location.h"

#include "moereg/base/error.h"
#include "moereg/base/log.h"
#include "moereg/base/printable.h"
#include "moereg/gguf/gguf_family.h"
#include "moereg/tensor/tensor_view.h"

namespace fs = std::filesystem;

namespace moereg::app {

namespace {

void sink_append(void* ctx, const char* data, std::size_t size) { static_cast<std::string*>(ctx)->append(data, size); }

}  // namespace

std::unique_ptr<plugin_registry> make_registry(const std::vector<std::string>& plugin_paths,
                                               const std::vector<std::string>& forbidden_dirs) {
  registry_options opts;
  opts.plugin_paths = plugin_paths;
  opts.forbidden_dirs = forbidden_dirs;
  return std::make_unique<plugin_registry>(opts);
}

std::string known_families_hint(const family_catalog& catalog) {
  std::string s;
  for (const auto& t : catalog.known_model_types()) s += (s.empty() ? "" : ", ") + t;
  return "known model types: " + (s.empty() ? std::string("(none: no family plugins were found)") : s) +
         ". To add a family, write a plugin.yaml (" + doc_ref("plugin-authoring.md") + ") and pass its directory with --plugin-path";
}

family_catalog make_catalog(plugin_registry& registry) {
  std::vector<plugin_manifest> ms;
  for (const plugin_record* r : registry.families()) ms.push_back({r->name, r->manifest_path, {}});
  std::vector<refused_plugin> refused;
  for (const plugin_record* r : registry.requested_refusals())
    refused.push_back({r->name, r->model_types, r->source + " " + r->directory + ": " + r->reason});
  return family_catalog(ms, std::move(refused));
}

namespace {

// The catalog's one rule for which library serves a hook: family_spec::hook_plugins.
std::pair<const plugin_record*, const moereg_hooks_api*> serving_library(plugin_registry& registry, const family_spec& spec,
                                                                         const std::string& hook) {
  auto it = spec.hook_plugins.find(hook);
  const plugin_record* rec = it == spec.hook_plugins.end() ? nullptr : registry.find_family(it->second);
  if (!rec) throw error("hook '" + hook + "' is not listed by plugin '" + spec.name + "' or the plugins it extends");
  return {rec, registry.hooks(*rec)};
}

}  // namespace

std::pair<const plugin_record*, const moereg_hooks_api*> model_session::hook_library(const std::string& hook) const {
  return serving_library(*registry, spec, hook);
}

hook_runner model_session::hooks() {
  std::string config_text = json::dump(ckpt->config());
  // The registry outlives the runner (it is owned through a unique_ptr); the spec is copied,
  // so the session may move.
  plugin_registry* reg = registry.get();
  auto owner = std::make_shared<const family_spec>(spec);
  return [reg, owner, config_text](const std::string& hook, int direction, const std::string& key, const tensor_spec& t,
                                   const std::byte* src, std::byte* dst) {
    auto [rec, api] = serving_library(*reg, *owner, hook);
    if (!api || !api->transform) throw error(rec->library_path + ": hook library has no transform slot (needed for '" + hook + "')");
    moereg_tensor_view in = contiguous_view(src, t.type, t.shape), out = contiguous_view(dst, t.type, t.shape);
    throw_if_error(api->transform(hook.c_str(), direction, key.c_str(), config_text.c_str(), &in, &out),
                   "plugin '" + rec->name + "' hook '" + hook + "' on tensor '" + key + "'");
  };
}

model_session open_session(const session_request& req) {
  model_session s;
  fs::path p(req.checkpoint);
  std::string dir = fs::is_directory(p) ? p.string() : p.parent_path().string();
  std::error_code ec;
  std::string real = fs::weakly_canonical(dir.empty() ? "." : dir, ec).string();
  // The checkpoint first: a damaged file is refused before any plugin is loaded.
  checkpoint_options co;
  co.require_config = false;
  s.ckpt = std::make_unique<checkpoint>(checkpoint::open(req.checkpoint, co));
  s.registry = make_registry(req.plugin_paths, {real});
  s.catalog = make_catalog(*s.registry);

  // A GGUF model without config.json: the plugin whose `gguf` section claims its
  // general.architecture makes one from the metadata.
  if (!s.ckpt->config().is_object() && s.ckpt->gguf()) {
    const gguf_file& g = *s.ckpt->gguf();
    std::string arch = g.get_string("general.architecture").value_or("");
    for (const auto& m : s.catalog.manifests()) {
      if (m.model_types.empty()) continue;
      const std::vector<std::string>& claimed = m.model_types;
      family_spec spec;
      try {
        spec = s.catalog.resolve(m.name, claimed.front());
      } catch (const error& e) {
        spdlog::debug("{}: not considered for {} ({})", m.name, g.path(), e.what());  // a broken plugin claims nothing
        continue;
      }
      auto mt = gguf_model_type(g, spec.gguf, claimed);
      if (!mt) continue;
      if (*mt != claimed.front()) spec = s.catalog.resolve(m.name, *mt);
      s.ckpt->set_config(gguf_config(g, spec), g.path() + " (GGUF metadata)");
      spdlog::debug("{}: config made from GGUF metadata (architecture {}) by plugin {}", g.path(), arch, m.name);
      break;
    }
    if (!s.ckpt->config().is_object())
      throw error(g.path() + ": GGUF architecture " + quote(arch) + " is not mapped by any family plugin's 'gguf' section" +
                  (s.ckpt->is_directory() ? std::string() : " (and there is no config.json to read instead)") + "; " +
                  known_families_hint(s.catalog));
  }

  // No config.json: a plugin with a native config reader (Mistral's params.json) may make one.
  if (!s.ckpt->config().is_object()) {
    for (const auto& m : s.catalog.manifests()) {
      if (m.native_config_file.empty() || !s.ckpt->is_directory()) continue;
      fs::path native = fs::path(req.checkpoint) / m.native_config_file;
      if (!fs::exists(native)) continue;
      const plugin_record* rec = s.registry->find_family(m.name);
      const moereg_hooks_api* api = rec ? s.registry->hooks(*rec) : nullptr;
      if (!api || !api->read_config) throw error(m.path + ": native_config hook needs a library with read_config");
      std::string text;
      throw_if_error(api->read_config(m.native_config_hook.c_str(), req.checkpoint.c_str(), moereg_sink{&text, sink_append}),
                     "plugin '" + m.name + "' reading " + native.string());
      s.ckpt->set_config(json::parse(text, "config made by plugin '" + m.name + "' from " + native.string()), native.string());
      s.native_config = true;
      spdlog::debug("config.json made from {} by plugin {}", native.string(), m.name);
      break;
    }
    if (!s.ckpt->config().is_object())
      throw error(req.checkpoint + ": missing config.json (and no plugin recognised a native config file there)");
  }

  const json::value& cfg = s.ckpt->config();
  std::vector<std::string> candidates;
  if (!req.family.empty()) {
    if (s.catalog.find(req.family)) {
      candidates.push_back(req.family);
      const json::value* mt = cfg.find("model_type");
      s.model_type = mt && mt->is_string() ? mt->as_string() : req.family;
    } else {
      s.model_type = req.family;
      candidates = s.catalog.plugins_for(req.family);
    }
  } else {
    const json::value* mt = cfg.find("model_type");
    if (!mt || !mt->is_string())
      throw error(s.ckpt->config_path() + ": no \"model_type\" string, so the family is unknown; pass --family. " +
                  known_families_hint(s.catalog));
    s.model_type = mt->as_string();
    candidates = s.catalog.plugins_for(s.model_type);
  }
  if (candidates.empty() && !req.family.empty())  // the value came from the request, not from config.json
    throw error("family " + quote(req.family) + " (given for " + req.checkpoint +
                "): no family plugin of that name or model_type; " + known_families_hint(s.catalog));
  if (candidates.empty())
    throw error(s.ckpt->config_path() + ": model_type " + quote(s.model_type) + " is not handled by any family plugin; " +
                known_families_hint(s.catalog));
  // A native checkpoint is read by the plugin that understood its config first.
  std::string first_error;
  for (const auto& plugin : candidates) {
    try {
      family_spec spec = s.catalog.resolve(plugin, s.model_type);
      if (!req.to_layout.empty() && !spec.find_layout(req.to_layout)) {
        if (first_error.empty())
          first_error = "family '" + spec.name + "' has no layout '" + req.to_layout + "' (it has: " + [&] {
            std::string l;
            for (const auto& x : spec.layouts) {
              l += (l.empty() ? "" : ", ") + x.name;
              for (const auto& a : x.aliases) l += ", " + a;
            }
            return l;
          }() + ")";
        continue;
      }
      model_dims dims = read_dims(spec, cfg, s.ckpt->config_path());
      const layout_spec* layout = nullptr;
      if (!req.from_layout.empty()) {
        layout = spec.find_layout(req.from_layout);
        if (!layout) {
          if (first_error.empty()) first_error = "family '" + spec.name + "' has no layout '" + req.from_layout + "'";
          continue;
        }
      }
      s.spec = std::move(spec);
      s.dims = dims;
      s.layout = layout ? layout : &detect_layout(*s.ckpt, s.spec, s.dims);
      return s;
    } catch (const error& e) {
      if (first_error.empty()) first_error = e.what();
    }
  }
  throw error(first_error);
}

}  // namespace moereg::app
