// SPDX-License-Identifier: Apache-2.0
#include "conversion_support.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "moereg/base/error.h"
#include "moereg/checkpoint/checkpoint_writer.h"
#include "moereg/exec/executor.h"
#include "moereg/gguf/gguf_family.h"
#include "moereg/gguf/gguf_output.h"
#include "moereg/registry/plugin_registry.h"
#include "moereg/tensor/tensor_view.h"

namespace fs = std::filesystem;

namespace moereg::test {

const family_catalog& source_catalog() {
  static const family_catalog cat = [] {
    std::vector<plugin_manifest> ms;
    for (const auto& d : fs::directory_iterator(std::string(MOEREG_SOURCE_DIR) + "/plugins")) {
      fs::path y = d.path() / "plugin.yaml";
      if (!fs::exists(y)) continue;
      ms.push_back({d.path().filename().string(), y.string(), {}});  // the catalog reads the file
    }
    return family_catalog(ms);
  }();
  return cat;
}

family_spec spec_for(const checkpoint& ckpt) {
  std::string mt = ckpt.config().find("model_type")->as_string();
  auto plugins = source_catalog().plugins_for(mt);
  if (plugins.empty()) throw error("no plugin for " + mt);
  return source_catalog().resolve(plugins.front(), mt);
}

// The built hook libraries (build/lib/moereg/plugins), loaded once for the whole test run.
plugin_registry& built_plugins() {
  static plugin_registry reg([] {
    registry_options o;
    o.plugin_paths = {std::string(MOEREG_BUILD_DIR) + "/lib/moereg/plugins"};
    o.use_environment = false;
    o.installed_root = std::string(MOEREG_BUILD_DIR) + "/lib/moereg";
    return o;
  }());
  return reg;
}

hook_runner plugin_hooks(const family_spec& spec, const json::value& config) {
  std::string config_text = json::dump(config);
  std::string plugin = spec.name;
  return [config_text, plugin](const std::string& hook, int direction, const std::string& key, const tensor_spec& t,
                               const std::byte* src, std::byte* dst) {
    const plugin_record* rec = built_plugins().find_family(plugin);
    const moereg_hooks_api* api = rec ? built_plugins().hooks(*rec) : nullptr;
    if (!api || !api->transform) throw error("test: plugin '" + plugin + "' has no built hook library with a transform slot");
    moereg_tensor_view in = contiguous_view(src, t.type, t.shape), out = contiguous_view(dst, t.type, t.shape);
    throw_if_error(api->transform(hook.c_str(), direction, key.c_str(), config_text.c_str(), &in, &out),
                   "plugin '" + plugin + "' hook '" + hook + "' on tensor '" + key + "'");
  };
}

void convert(const std::string& ckpt_path, const std::string& out_dir, const std::string& to, const std::string& from,
             const plan_options& options) {
  checkpoint ckpt = checkpoint::open(ckpt_path);
  family_spec spec = spec_for(ckpt);
  model_dims dims = read_dims(spec, ckpt.config(), ckpt.config_path());
  const layout_spec* src = from.empty() ? &detect_layout(ckpt, spec, dims) : spec.find_layout(from);
  if (!src) throw error("no layout " + from);
  const layout_spec* dst = spec.find_layout(to);
  if (!dst) throw error("no layout " + to);
  decoded_checkpoint d = decode_checkpoint(ckpt, spec, *src, dims);
  conversion_plan plan = plan_conversion(d, *dst, options);
  std::vector<tensor_spec> specs;
  for (const auto& o : plan.outputs) specs.push_back(o.spec);
  bool gguf = dst->container == "gguf";
  checkpoint_writer w(out_dir, gguf ? plan_gguf_file(specs, dst->file_stem) : plan_shards(specs, {}), false,
                      gguf ? gguf_sink_factory(gguf_output_metadata(spec, ckpt.config(), ckpt.config_path(), ckpt.gguf(), specs)) : sink_factory{});
  execute_options eo;
  eo.threads = 2;
  eo.hooks = plugin_hooks(spec, ckpt.config());
  execute_plan(plan, w, eo);
  w.write_file("config.json", json::dump(ckpt.config(), 2));
  w.finish(false);
}

std::vector<tensor_ref> refs(const checkpoint& c) {
  std::vector<tensor_ref> out;
  for (const auto& e : c.tensors())
    out.push_back({e.info->name, e.info->type, e.info->shape, e.data(), e.info->nbytes(), false, e.info->ggml_blocks});
  return out;
}

std::string output_file(const std::string& dir, const std::string& layout_name, const family_spec& spec) {
  const layout_spec* l = spec.find_layout(layout_name);
  return dir + "/" + (l ? l->file_stem : "model") + (l && l->container == "gguf" ? ".gguf" : ".safetensors");
}

std::string diff_text(const comparison& c) {
  std::string s;
  for (std::size_t i = 0; i < c.differences.size() && i < 10; ++i)
    s += c.differences[i].kind + " " + c.differences[i].name + " " + c.differences[i].detail + "\n";
  return s;
}

void expect_language_model_equal(const std::string& got_path, const std::string& want_path) {
  checkpoint got = checkpoint::open(got_path), want = checkpoint::open(want_path);
  int language = 0;
  for (const auto& w : want.tensors()) {
    if (w.info->name.rfind("model.visual.", 0) == 0) continue;
    ++language;
    const checkpoint::entry* g = got.find(w.info->name);
    ASSERT_NE(g, nullptr) << w.info->name;
    EXPECT_EQ(g->info->type, w.info->type) << w.info->name;
    EXPECT_EQ(g->info->shape, w.info->shape) << w.info->name;
    ASSERT_EQ(g->info->nbytes(), w.info->nbytes()) << w.info->name;
    EXPECT_EQ(std::memcmp(g->data(), w.data(), w.info->nbytes()), 0) << w.info->name;
  }
  EXPECT_EQ(static_cast<int>(got.tensors().size()), language) << got_path << ": only the language model comes back";
}

void expect_same_tensors(const std::string& a, const std::string& b) {
  checkpoint ca = checkpoint::open(a, {false}), cb = checkpoint::open(b, {false});
  comparison c = compare_tensors(refs(ca), refs(cb));
  EXPECT_TRUE(c.equal()) << a << " vs " << b << "\n" << diff_text(c);
  EXPECT_GT(c.compared, 0u);
}

}  // namespace moereg::test
