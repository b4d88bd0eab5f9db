// SPDX-License-Identifier: Apache-2.0
// Plugin manifests as an adversarial user meets them: every problem at its real file, line
// and column (also through `extends` and `variants`), duplicate keys refused, config fields
// that a manifest names but config.json lacks refused instead of defaulted, and untrusted
// manifests refused without falling back to the installed plugin.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "moereg/app/plugins.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/layout/family_catalog.h"
#include "moereg/registry/plugin_registry.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_plugin_manifests {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string replace(std::string text, const std::string& from, const std::string& to) {
  auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "'" << from << "' not in the manifest";
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// The shipped qwen3_moe manifest without its library (YAML only), line numbers kept.
std::string qwen3_yaml_only() {
  std::string t = read_text(std::string(MOEREG_SOURCE_DIR) + "/plugins/qwen3_moe/plugin.yaml");
  t = replace(t, "library: libmoereg_qwen3_moe.so\n", "# (no library)\n");
  return replace(t, "hooks: []\n", "# (no hooks)\n");
}

// "file:line:column" of the first occurrence of needle in text (1-based, as messages say it).
// `skip` characters into the needle (to point at a value after its key).
std::string where(const std::string& file, const std::string& text, const std::string& needle, std::size_t skip = 0) {
  auto at = text.find(needle);
  EXPECT_NE(at, std::string::npos) << needle;
  if (at == std::string::npos) return "?";
  at += skip;
  auto line_start = text.rfind('\n', at);
  line_start = line_start == std::string::npos ? 0 : line_start + 1;
  long line = 1 + std::count(text.begin(), text.begin() + static_cast<long>(at), '\n');
  return file + ":" + std::to_string(line) + ":" + std::to_string(at - line_start + 1);
}

void write_plugin(const std::string& dir, const std::string& yaml) {
  fs::create_directories(dir);
  ::chmod(dir.c_str(), 0755);
  test::write_bytes(dir + "/plugin.yaml", yaml);
  ::chmod((dir + "/plugin.yaml").c_str(), 0644);
}

class PluginManifests : public ::testing::Test {
 protected:
  test::temp_dir tmp;
  std::string plugins = tmp / "plugins";
  void SetUp() override {
    ::chmod(tmp.path().c_str(), 0755);
    fs::create_directories(plugins);
    ::chmod(plugins.c_str(), 0755);
  }
};

}  // namespace

// Was "plugin.yaml:1: unknown key 'fuze'" whatever the line.
TEST_F(PluginManifests, TypoIsReportedAtItsLineAndColumn) {
  std::string text = replace(qwen3_yaml_only(), "fuse: [gate, up]", "fuze: [gate, up]");
  text = replace(text, "  scoring: softmax", "  scorng: softmax");
  std::string y = plugins + "/qwen3_moe/plugin.yaml";
  write_plugin(plugins + "/qwen3_moe", text);
  auto r = test::run_moereg("plugins check " + plugins + "/qwen3_moe");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, where(y, text, "fuze") + ": unknown key 'fuze' in expert entry 'gate_up'")) << r.output;
  EXPECT_TRUE(test::contains(r.output, where(y, text, "scorng") + ": unknown key 'scorng' in routing")) << r.output;
  // A command using the family reports the same place.
  r = test::run_moereg("convert --dry-run " + test::fixture("qwen3_moe/hf") + " " + (tmp / "out") +
                       " --to grouped --plugin-path " + plugins);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, where(y, text, "fuze") + ": unknown key 'fuze'")) << r.output;
}

// A problem in a part inherited through `extends` is in the parent's file, at its line; a
// problem in a variant is at the variant's line.
TEST_F(PluginManifests, InheritedAndVariantProblemsNameTheirOwnFileAndLine) {
  std::string parent = replace(qwen3_yaml_only(), "name: qwen3_moe", "name: base_moe");
  parent = replace(parent, "model_types: [qwen3_moe]", "model_types: [base_moe]");
  parent = replace(parent, "transpose: true", "transpos: true");
  write_plugin(plugins + "/base_moe", parent);
  std::string child =
      "name: child_moe\n"
      "version: '1'\n"
      "api_version: 1\n"
      "model_types: [child_moe]\n"
      "extends: base_moe\n"
      "variants:\n"
      "  child_moe:\n"
      "    routing: {scoring: softmax, renormalise: true}\n"
      "layouts:\n"
      "  mine:\n"
      "    experts:\n"
      "      gate: {key: \"m.{layer}.{expert}.g\"}\n"
      "      up: {key: \"m.{layer}.{expert}.u\", stak: false}\n"
      "      down: {key: \"m.{layer}.{expert}.d\"}\n";
  std::string c = tmp / "child";
  write_plugin(c, child);
  auto r = test::run_moereg("plugins check " + c + " --plugin-path " + plugins);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, where(plugins + "/base_moe/plugin.yaml", parent, "transpos") + ": unknown key 'transpos'")) << r.output;
  EXPECT_TRUE(test::contains(r.output, where(c + "/plugin.yaml", child, "stak") + ": unknown key 'stak'")) << r.output;
  EXPECT_TRUE(test::contains(r.output, where(c + "/plugin.yaml", child, "renormalise") + ": unknown key 'renormalise' in routing")) << r.output;
  EXPECT_TRUE(test::contains(where(c + "/plugin.yaml", child, "stak"), ":13:")) << "the test's own arithmetic";
  EXPECT_FALSE(test::contains(r.output, c + "/plugin.yaml:1:")) << r.output;

  // The same check through the application layer: the problems as values, the CLI's lines.
  auto api = app::check_plugin({{plugins}}, c);
  ASSERT_TRUE(api.ok()) << api.error().message;
  const auto& problems = api.value().problems;
  ASSERT_FALSE(problems.empty());
  for (const auto& p : problems) EXPECT_TRUE(test::contains(r.output, p)) << p;
  EXPECT_TRUE(std::any_of(problems.begin(), problems.end(), [&](const std::string& p) {
    return p.rfind(where(plugins + "/base_moe/plugin.yaml", parent, "transpos"), 0) == 0;
  })) << "the inherited typo at its own file and line";
  auto json = test::run_moereg("plugins check " + c + " --plugin-path " + plugins + " --json");
  EXPECT_EQ(json.output, api.value().json + "\n");
}

// list / show / check as values: what the CLI prints is the API's result.
TEST_F(PluginManifests, ListShowAndCheckThroughTheApplicationLayer) {
  write_plugin(plugins + "/qwen3_moe", qwen3_yaml_only());
  auto list = app::list_plugins({{plugins}});
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_FALSE(list.value().search_dirs.empty());
  EXPECT_EQ(list.value().search_dirs[0].path, plugins);
  EXPECT_EQ(list.value().search_dirs[0].source, "--plugin-path");
  // The --plugin-path copy wins; the installed qwen3_moe is shadowed by it.
  std::vector<std::string> states;
  for (const auto& p : list.value().plugins)
    if (p.name == "qwen3_moe") states.push_back(p.source + ":" + p.state);
  ASSERT_GE(states.size(), 1u);
  EXPECT_EQ(states[0], "--plugin-path:loaded") << states[0];  // list loads every library (none here)
  for (std::size_t i = 1; i < states.size(); ++i) EXPECT_TRUE(test::contains(states[i], ":shadowed")) << states[i];
  auto cli = test::run_moereg("plugins list --plugin-path " + plugins + " --json");
  EXPECT_EQ(cli.output, list.value().json + "\n");

  auto show = app::show_plugin({{plugins}}, "qwen3_moe");
  ASSERT_TRUE(show.ok()) << show.error().message;
  const app::plugin_entry& mine = show.value().entries.at(0);
  EXPECT_EQ(mine.directory, plugins + "/qwen3_moe");
  EXPECT_NE(std::find(mine.layouts.begin(), mine.layouts.end(), "transformers_v5"), mine.layouts.end());
  // Each layout with its aliases and the manifest's description, as yaml-reference.md says.
  auto hf = std::find_if(mine.layout_details.begin(), mine.layout_details.end(), [](const auto& l) { return l.name == "hf"; });
  ASSERT_NE(hf, mine.layout_details.end());
  EXPECT_NE(std::find(hf->aliases.begin(), hf->aliases.end(), "transformers_v4"), hf->aliases.end());
  EXPECT_FALSE(hf->description.empty());
  cli = test::run_moereg("plugins show qwen3_moe --plugin-path " + plugins + " --json");
  EXPECT_EQ(cli.output, show.value().json + "\n");
  cli = test::run_moereg("plugins show qwen3_moe --plugin-path " + plugins);
  EXPECT_TRUE(test::contains(cli.output, "hf (also ")) << cli.output;
  EXPECT_TRUE(test::contains(cli.output, hf->description)) << cli.output;

  auto none = app::show_plugin({{plugins}}, "no_such_family");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().kind, app::error_kind::input);
  EXPECT_TRUE(test::contains(none.error().message, plugins)) << "names where it looked: " << none.error().message;

  auto good = app::check_plugin({{plugins}}, plugins + "/qwen3_moe");
  ASSERT_TRUE(good.ok()) << good.error().message;
  EXPECT_TRUE(good.value().problems.empty()) << good.value().problems.front();
  EXPECT_EQ(good.value().name, "qwen3_moe");
}

// `name:` twice kept the first silently; a key twice inside a layout too.
TEST_F(PluginManifests, DuplicateKeysAreRefusedNamingBothLines) {
  std::string text = replace(qwen3_yaml_only(), "version: \"1.0.0\"\n", "version: \"1.0.0\"\nname: qwen3_moe_too\n");
  write_plugin(plugins + "/qwen3_moe", text);
  std::string y = plugins + "/qwen3_moe/plugin.yaml";
  // Lines counted in the text (the shipped manifest's header comments may change).
  auto line_of = [&](const std::string& needle) {
    return std::to_string(1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(text.find(needle)), '\n'));
  };
  const std::string first = line_of("name: qwen3_moe\n"), second = line_of("name: qwen3_moe_too\n");
  auto r = test::run_moereg("plugins check " + plugins + "/qwen3_moe");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, y + ":" + second + ":1: duplicate key 'name' (first given at line " + first + ")")) << r.output;
  // Only that: a file that does not load is not also "missing" every key of an empty manifest.
  EXPECT_TRUE(test::contains(r.output, ": 1 problem(s)")) << r.output;
  EXPECT_FALSE(test::contains(r.output, "missing 'layouts'")) << r.output;
  r = test::run_moereg("plugins list --plugin-path " + plugins);
  EXPECT_TRUE(test::contains(r.output, "refused: " + y + ":" + second + ":1: duplicate key 'name'")) << r.output;

  text = replace(qwen3_yaml_only(), "fuse: [gate, up]", "fuse: [gate, up], key: \"x.{layer}\"");
  write_plugin(plugins + "/qwen3_moe", text);
  r = test::run_moereg("plugins check " + plugins + "/qwen3_moe");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, where(y, text, "key: \"x.{layer}\"") + ": duplicate key 'key' (first given at line ")) << r.output;
}

// Booleans are YAML 1.2: `transpose: yes` is refused by line, not read as true.
TEST_F(PluginManifests, Yaml11BooleansAreRefused) {
  std::string text = replace(qwen3_yaml_only(), "transpose: true", "transpose: yes");
  text = replace(text, "renormalize: {config: norm_topk_prob, default: false}", "renormalize: on");
  write_plugin(plugins + "/qwen3_moe", text);
  std::string y = plugins + "/qwen3_moe/plugin.yaml";
  auto r = test::run_moereg("plugins check " + plugins + "/qwen3_moe");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, where(y, text, "transpose: yes", 11) + ": transpose must be true or false, found 'yes'")) << r.output;
  EXPECT_TRUE(test::contains(r.output, where(y, text, "renormalize: on", 13) + ": routing.renormalize is 'on', expected true or false"))
      << r.output;
}

// A routing field named without a default must be in config.json: a typo used to route with
// the defaults and print wrong numbers with exit status 0.
TEST_F(PluginManifests, RoutingConfigFieldAbsentFromConfigIsAnError) {
  const std::string input = test::fixture("qwen3_moe/moe_block.safetensors");
  const std::string moe_run = "moe run " + test::fixture("qwen3_moe/hf") + " --layer 1 --input " + input + " --output " +
                              (tmp / "out.safetensors") + " --backend cpu --plugin-path " + plugins;
  std::string y = plugins + "/qwen3_moe/plugin.yaml";
  for (const char* bad : {"renormalize: {config: norm_topk_probs}", "renormalize: norm_topk_probs"}) {
    std::string text = replace(qwen3_yaml_only(), "renormalize: {config: norm_topk_prob, default: false}", bad);
    write_plugin(plugins + "/qwen3_moe", text);
    auto r = test::run_moereg(moe_run);
    EXPECT_EQ(r.exit_code, 1) << bad << "\n" << r.output;
    EXPECT_TRUE(test::contains(r.output, "no field 'norm_topk_probs', which routing.renormalize names at " +
                                  where(y, text, "renormalize:", 13) + " without a default"))
        << r.output;
    EXPECT_FALSE(fs::exists(tmp / "out.safetensors"));
  }
  // The same field with a default is optional.
  write_plugin(plugins + "/qwen3_moe",
               replace(qwen3_yaml_only(), "renormalize: {config: norm_topk_prob, default: false}",
                       "renormalize: {config: norm_topk_prob, default: false}\n  scaling: {config: routed_scaling_factor, default: 1.0}"));
  auto r = test::run_moereg(moe_run);
  EXPECT_EQ(r.exit_code, 0) << r.output;

  // A family without routing: plugins check says so, moe run refuses it.
  std::string text = qwen3_yaml_only();
  text = text.substr(0, text.find("routing:"));
  write_plugin(plugins + "/qwen3_moe", text);
  r = test::run_moereg("plugins check " + plugins + "/qwen3_moe");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "note: " + y + ": family 'qwen3_moe' declares no 'routing', so moe run refuses it")) << r.output;
  fs::remove(tmp / "out.safetensors");
  r = test::run_moereg(moe_run);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, y + ": family 'qwen3_moe' (qwen3_moe) declares no 'routing'")) << r.output;
  EXPECT_FALSE(fs::exists(tmp / "out.safetensors"));
}

// A plugin.yaml anyone may write, or in a directory anyone may write, is refused like a
// library would be; the family it would have served fails instead of falling back.
TEST_F(PluginManifests, UntrustedManifestIsRefusedAndDoesNotFallBack) {
  // gate and up swapped: what a planted manifest would do.
  std::string text = replace(qwen3_yaml_only(), "fuse: [gate, up]", "fuse: [up, gate]");
  std::string p = plugins + "/qwen3_moe", y = p + "/plugin.yaml";
  write_plugin(p, text);
  const std::string convert = "convert " + test::fixture("qwen3_moe/hf") + " " + (tmp / "out") + " --to transformers_v5 --plugin-path " + plugins;
  struct bad_case {
    std::string path;
    mode_t mode;
    std::string reason;
  };
  for (const bad_case& b : {bad_case{y, 0666, y + ": plugin manifest is writable by group or others (mode 0666)"},
                            bad_case{p, 0777, p + ": directory of plugin manifest plugin.yaml is writable by group or others (mode 0777)"},
                            bad_case{plugins, 0777, plugins + ": directory on the plugin search path is writable by group or others (mode 0777)"}}) {
    SCOPED_TRACE(b.path);
    ::chmod(b.path.c_str(), b.mode);
    auto r = test::run_moereg(convert);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(test::contains(r.output, "plugin 'qwen3_moe' was asked for but refused: --plugin-path " + p + ": " + b.reason)) << r.output;
    EXPECT_FALSE(fs::exists(tmp / "out"));
    r = test::run_moereg("plugins list --plugin-path " + plugins);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(test::contains(r.output, "refused: " + b.reason)) << r.output;
    // The installed plugin is listed too: both records are shown.
    int rows = 0;
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) rows += line.rfind("qwen3_moe ", 0) == 0;
    EXPECT_EQ(rows, 2) << r.output;
    ::chmod(b.path.c_str(), b.path == y ? 0644 : 0755);
  }
  if (::geteuid() == 0) {
    ASSERT_EQ(::chown(y.c_str(), 65534, 65534), 0);
    auto r = test::run_moereg(convert);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(test::contains(r.output, y + ": plugin manifest is owned by uid 65534, expected root or the current user")) << r.output;
    EXPECT_FALSE(fs::exists(tmp / "out"));
    ASSERT_EQ(::chown(y.c_str(), 0, 0), 0);
  }
  // Trusted again, the user's manifest is used.
  auto r = test::run_moereg(convert);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// Shape errors name the config.json field behind each symbol.
TEST_F(PluginManifests, ShapeErrorsNameTheConfigFieldOfEachSymbol) {
  std::string d = tmp / "m";
  fs::copy(test::fixture("qwen3_moe/hf"), d, fs::copy_options::recursive);
  std::string cfg = read_text(d + "/config.json");
  test::write_bytes(d + "/config.json", replace(cfg, "\"moe_intermediate_size\": 24", "\"moe_intermediate_size\": 32"));
  auto r = test::run_moereg("convert " + d + " " + (tmp / "out") + " --to transformers_v5");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, "I = 32 from `moe_intermediate_size`")) << r.output;
  EXPECT_TRUE(test::contains(r.output, "H = 64 from `hidden_size` in " + d + "/config.json")) << r.output;
  // Each names the layout entry it was read for, and a tensor of the wrong shape is not also
  // listed as missing.
  EXPECT_TRUE(test::contains(r.output, "entry 'gate' of layout 'hf' at ")) << r.output;
  EXPECT_FALSE(test::contains(r.output, "missing expert tensor")) << r.output;
  EXPECT_FALSE(fs::exists(tmp / "out"));
  // inspect shows the same problems (and still exits 0: it is for looking).
  r = test::run_moereg("inspect " + d);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "problems    " + d + ": ")) << r.output;
  EXPECT_TRUE(test::contains(r.output, "I = 32 from `moe_intermediate_size`")) << r.output;
  r = test::run_moereg("inspect " + test::fixture("qwen3_moe/hf"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(test::contains(r.output, "problems")) << r.output;
}

// The plan says which rows of a fused tensor each piece is: gate and up differ only there.
TEST_F(PluginManifests, PlanNamesTheRowsOfEachFusedPiece) {
  auto r = test::run_moereg("convert " + test::fixture("qwen3_moe/hf") + " " + (tmp / "v5") + " --to transformers_v5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_moereg("convert --dry-run " + (tmp / "v5") + " " + (tmp / "back") + " --to hf");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "experts.3.gate_proj.weight  BF16 [24, 64]  <- model.layers.1.mlp.experts.gate_up_proj[3, rows 0..23]"))
      << r.output;
  EXPECT_TRUE(test::contains(r.output, "experts.3.up_proj.weight  BF16 [24, 64]  <- model.layers.1.mlp.experts.gate_up_proj[3, rows 24..47]"))
      << r.output;
  r = test::run_moereg("convert " + test::fixture("qwen3_moe/hf") + " " + (tmp / "g") + " --to grouped");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_moereg("convert --dry-run " + (tmp / "g") + " " + (tmp / "back") + " --to hf");
  EXPECT_TRUE(test::contains(r.output, "<- model.layers.1.mlp.experts.gate_and_up_projs[3, columns 24..47 (transposed)]")) << r.output;
}

// What a newcomer writing a YAML-only plugin gets wrong first (a session's audit, following
// the docs alone): each is said at the manifest line that caused it, once.
TEST_F(PluginManifests, DimsAndLayerCountFieldsAbsentFromConfigNameTheirLine) {
  std::string y = plugins + "/qwen3_moe/plugin.yaml";
  const std::string convert =
      "convert --dry-run " + test::fixture("qwen3_moe/hf") + " " + (tmp / "out") + " --to grouped --plugin-path " + plugins;
  // Was "expected a positive integer in moe_intermediate_sizes for I": neither absent nor where.
  std::string text = replace(qwen3_yaml_only(), "I: moe_intermediate_size", "I: moe_intermediate_sizes");
  write_plugin(plugins + "/qwen3_moe", text);
  auto r = test::run_moereg(convert);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, "no field 'moe_intermediate_sizes', which dims.I names at " + where(y, text, "I: moe_", 3) +
                                           " without a default"))
      << r.output;
  text = replace(qwen3_yaml_only(), "count: num_hidden_layers", "count: num_hidden_layer");
  write_plugin(plugins + "/qwen3_moe", text);
  r = test::run_moereg(convert);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, "no field 'num_hidden_layer', which moe_layers.count names at " +
                                           where(y, text, "count: num_hidden_layer", 7) + " without a default"))
      << r.output;
  EXPECT_FALSE(fs::exists(tmp / "out"));
}

// Without `passthrough` every other tensor was "not claimed" at convert time; without dims.K or
// moe_block.router, `plugins check` said ok and moe run blamed config.json.
TEST_F(PluginManifests, PartsThatCommandsNeedAreSaidByPluginsCheck) {
  std::string text = qwen3_yaml_only();
  const auto from = text.find("passthrough:"), to = text.find("reference_layout:");
  ASSERT_NE(from, std::string::npos);
  ASSERT_NE(to, std::string::npos);
  write_plugin(plugins + "/qwen3_moe", text.substr(0, from) + text.substr(to));
  auto r = test::run_moereg("plugins check " + plugins + "/qwen3_moe");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "declares no 'passthrough'")) << r.output;

  write_plugin(plugins + "/qwen3_moe", replace(qwen3_yaml_only(), "  K: num_experts_per_tok\n", ""));
  r = test::run_moereg("plugins check " + plugins + "/qwen3_moe");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "has no dims.K (experts per token), so moe run refuses it")) << r.output;
  const std::string moe_run = "moe run " + test::fixture("qwen3_moe/hf") + " --layer 1 --input " +
                              test::fixture("qwen3_moe/moe_block.safetensors") + " --output " + (tmp / "o.safetensors") +
                              " --backend cpu --plugin-path " + plugins;
  r = test::run_moereg(moe_run);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, plugins + "/qwen3_moe/plugin.yaml: dims has no K (experts per token)")) << r.output;
  EXPECT_FALSE(fs::exists(tmp / "o.safetensors"));

  write_plugin(plugins + "/qwen3_moe", replace(qwen3_yaml_only(), "  router: \"model.layers.{layer}.mlp.gate.weight\"\n", ""));
  r = test::run_moereg("plugins check " + plugins + "/qwen3_moe");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "declares no moe_block.router, so moe run refuses it")) << r.output;
}

// A piece name mistyped in `fuse` is one problem, not also "needs at least two pieces".
TEST_F(PluginManifests, MistypedFusePieceIsSaidOnce) {
  std::string text = replace(qwen3_yaml_only(), "fuse: [gate, up]", "fuse: [gate, upp]");
  std::string y = plugins + "/qwen3_moe/plugin.yaml";
  write_plugin(plugins + "/qwen3_moe", text);
  auto r = test::run_moereg("plugins check " + plugins + "/qwen3_moe");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, where(y, text, "[gate, upp]") + ": fuse lists 'upp', expected gate, up or down")) << r.output;
  EXPECT_FALSE(test::contains(r.output, "at least two pieces")) << r.output;
}

// One rule for which library serves a hook: the plugin that declared the layout naming it.
// A layout inherited through `extends` keeps its parent's hook (the old merge checked it
// against the child's `hooks` and refused the child).
TEST(PluginHooks, InheritedLayoutKeepsItsPluginsHook) {
  const std::string parent =
      "name: p\nversion: '1'\napi_version: 1\nmodel_types: [p_moe]\nlibrary: libp.so\nhooks: [ph]\n"
      "dims: {E: e, H: h, I: i}\nmoe_layers: {count: layers}\n"
      "layouts:\n"
      "  hf:\n"
      "    experts: {gate: {key: \"l.{layer}.{expert}.g\"}, up: {key: \"l.{layer}.{expert}.u\"}, down: {key: \"l.{layer}.{expert}.d\"}}\n"
      "    transforms: [{key: \"l.{layer}.q\", hook: ph}]\n";
  const std::string child_head = "name: c\nversion: '1'\napi_version: 1\nmodel_types: [c_moe]\nextends: p\n";
  const std::string own_layout =
      "layouts:\n"
      "  mine:\n"
      "    experts: {gate: {key: \"m.{layer}.{expert}.g\"}, up: {key: \"m.{layer}.{expert}.u\"}, down: {key: \"m.{layer}.{expert}.d\"}}\n"
      "    transforms: [{key: \"m.{layer}.q\", hook: ph}]\n";
  family_catalog cat({{"p", "p.yaml", YAML::Load(parent)}, {"c", "c.yaml", YAML::Load(child_head)}});
  family_spec f = cat.resolve("c", "c_moe");
  ASSERT_NE(f.plugin_serving("ph"), nullptr);
  EXPECT_EQ(*f.plugin_serving("ph"), "p");
  EXPECT_EQ(f.find_layout("hf")->at.str(), "p.yaml:10:3") << "the layout remembers its file and line";
  EXPECT_EQ(f.find_layout("hf")->at.plugin, "p");

  // The child's own layout may not use a hook the child does not list, even if its parent does.
  family_catalog bad({{"p", "p.yaml", YAML::Load(parent)}, {"c", "c.yaml", YAML::Load(child_head + own_layout)}});
  try {
    bad.resolve("c", "c_moe");
    FAIL() << "accepted";
  } catch (const error& e) {
    EXPECT_TRUE(test::contains(e.what(), "c.yaml:9:45: hook 'ph' is used but not listed under 'hooks' of plugin 'c' (c.yaml)")) << e.what();
  }
}

// Text from a manifest is untrusted: a version or model type carrying terminal escapes is
// printed escaped by plugins list, show and check.
TEST_F(PluginManifests, ManifestTextIsPrintedEscaped) {
  std::string text = replace(qwen3_yaml_only(), "version: \"1.0.0\"", "version: \"1.0\\e[2J\"");
  text = replace(text, "model_types: [qwen3_moe]", "model_types: [qwen3_moe, \"evil\\e]0;title\\a\"]");
  write_plugin(plugins + "/qwen3_moe", text);
  for (const std::string& cmd : {"plugins list --plugin-path " + plugins, "plugins show qwen3_moe --plugin-path " + plugins,
                                 "plugins check " + plugins + "/qwen3_moe --plugin-path " + plugins}) {
    SCOPED_TRACE(cmd);
    auto r = test::run_moereg(cmd);
    EXPECT_EQ(r.output.find('\x1b'), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find('\a'), std::string::npos) << r.output;
  }
  auto r = test::run_moereg("plugins show qwen3_moe --plugin-path " + plugins);
  EXPECT_TRUE(test::contains(r.output, "1.0\\x1b[2J")) << r.output;
}

}  // namespace test_plugin_manifests
