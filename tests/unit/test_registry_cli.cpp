// SPDX-License-Identifier: Apache-2.0
// `moereg plugins list|show|check` as a user runs it, on the tiny ABI test plugins.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "moereg/abi/moereg_abi.h"
#include "moereg/base/json.h"
#include "abi_plugins.h"
#include "test_support.h"

using namespace moereg;
using test::run_moereg;
namespace fs = std::filesystem;
using test::abi_lib;
using test::make_plugin;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_registry_cli {
namespace {

// The plugin API this build speaks, and the first one it refuses.
const std::string api_now = std::to_string(MOEREG_PLUGIN_API_VERSION), api_next = std::to_string(MOEREG_PLUGIN_API_VERSION + 1);

class PluginsCli : public ::testing::Test {
 protected:
  test::temp_dir tmp;
  std::string dir = tmp / "vendor";
  void SetUp() override {
    ::chmod(tmp.path().c_str(), 0755);
    make_plugin(dir + "/abi_good",
                "name: abi_good\nversion: '0.0.1'\napi_version: 1\nmodel_types: [abi_moe]\n"
                "library: libmoereg_abi_good.so\nhooks: [negate, throws]\n",
                "libmoereg_abi_good.so");
    make_plugin(dir + "/abi_wrong_api",
                "name: abi_wrong_api\nversion: '0.0.1'\napi_version: 1\nlibrary: libmoereg_abi_wrong_api.so\n"
                "hooks: [negate, throws]\n",
                "libmoereg_abi_wrong_api.so");
    for (const char* v : {"fast", "slow"})
      fs::copy_file(abi_lib(std::string("libmoereg_backend_abitest-") + v + ".so"),
                    dir + "/libmoereg_backend_abitest-" + v + ".so");
  }
};

}  // namespace

TEST_F(PluginsCli, ListShowsWhatLoadedAndWhatWasRefusedAndWhy) {
  auto r = run_moereg("plugins list --plugin-path " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "--plugin-path       " + dir + "\n")) << r.output;
  EXPECT_TRUE(test::contains(r.output, "abi_good        family   0.0.1     " + api_now + "    loaded    --plugin-path       " + dir + "/abi_good\n"))
      << r.output;
  EXPECT_TRUE(test::contains(r.output, "    refused: " + dir + "/abi_wrong_api/libmoereg_abi_wrong_api.so: plugin API " + api_next +
                                             ", this moereg accepts 1.." + api_now + "\n"))
      << r.output;
  EXPECT_TRUE(test::contains(r.output, "abitest         backend  fast      1    loaded    --plugin-path       " + dir +
                                "/libmoereg_backend_abitest-fast.so\n"))
      << r.output;
  EXPECT_TRUE(test::contains(r.output, "    shadowed: outscored by " + dir + "/libmoereg_backend_abitest-fast.so (probe score 100 > 20)"))
      << r.output;
}

TEST_F(PluginsCli, ListJson) {
  auto r = run_moereg("plugins list --json --plugin-path " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json::value v = json::parse(r.output, "plugins list --json");
  EXPECT_EQ(v.find("search_dirs")->as_array().at(0).find("source")->as_string(), "--plugin-path");
  int seen = 0;
  for (const auto& p : v.find("plugins")->as_array()) {
    std::string name = p.find("name")->as_string();
    if (name == "abi_good") {
      ++seen;
      EXPECT_EQ(p.find("state")->as_string(), "loaded");
      EXPECT_EQ(p.find("hooks")->as_array().size(), 2u);
    } else if (name == "abi_wrong_api") {
      ++seen;
      EXPECT_EQ(p.find("state")->as_string(), "refused");
      EXPECT_TRUE(test::contains(p.find("reason")->as_string(), "plugin API " + api_next + ", this moereg accepts 1.." + api_now));
    } else if (name == "abitest" && p.find("state")->as_string() == "loaded") {
      ++seen;
      EXPECT_EQ(p.find("probe_score")->as_int(), 100);
    }
  }
  EXPECT_EQ(seen, 3) << r.output;
}

TEST_F(PluginsCli, EnvironmentPath) {
  ::setenv("MOEREG_PLUGIN_PATH", dir.c_str(), 1);
  auto r = run_moereg("plugins show abi_good");
  ::unsetenv("MOEREG_PLUGIN_PATH");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "  source        MOEREG_PLUGIN_PATH\n")) << r.output;
}

TEST_F(PluginsCli, Show) {
  auto r = run_moereg("plugins show abi_good --plugin-path " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "abi_good (family)\n  state         loaded\n")) << r.output;
  EXPECT_TRUE(test::contains(r.output, "  library       " + dir + "/abi_good/libmoereg_abi_good.so\n")) << r.output;
  EXPECT_TRUE(test::contains(r.output, "  model types   abi_moe\n  hooks         negate, throws\n")) << r.output;
  r = run_moereg("plugins show abitest --plugin-path " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "  probe score   100\n")) << r.output;
  r = run_moereg("plugins show nothing_by_that_name --plugin-path " + dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(test::contains(r.output, "no plugin named 'nothing_by_that_name' found, searched: " + dir)) << r.output;
}

TEST_F(PluginsCli, CheckReportsEveryProblemWithFileAndLine) {
  std::string p = tmp / "broken";
  make_plugin(p, "name: Broken\napi_version: " + api_next + "\nlibrary: libmoereg_missing.so\nhooks: [a]\n");
  auto r = run_moereg("plugins check " + p);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  std::string y = p + "/plugin.yaml";
  EXPECT_TRUE(test::contains(r.output, y + ":1: 'name' must be a name of [a-z0-9_]+, found 'Broken'\n")) << r.output;
  EXPECT_TRUE(test::contains(r.output, y + ":1: missing required key 'version', expected a version string\n")) << r.output;
  EXPECT_TRUE(test::contains(r.output, y + ":2: plugin API " + api_next + ", this moereg accepts 1.." + api_now + "\n")) << r.output;
  EXPECT_TRUE(test::contains(r.output, y + ":3: library 'libmoereg_missing.so' not found, expected the file " + p +
                                "/libmoereg_missing.so\n"))
      << r.output;
  // A library that loads but disagrees with the manifest is reported too.
  make_plugin(p, "name: abi_good\nversion: '1'\napi_version: 1\nlibrary: libmoereg_abi_good.so\nhooks: [negate]\n",
              "libmoereg_abi_good.so");
  r = run_moereg("plugins check " + p);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, p + "/libmoereg_abi_good.so: hook 'throws' is exported but not listed in plugin.yaml 'hooks' (" +
                                y + ":5)\n"))
      << r.output;
}

TEST_F(PluginsCli, CheckAcceptsAGoodPluginAndJson) {
  auto r = run_moereg("plugins check --json " + dir + "/abi_good");
  json::value v = json::parse(r.output, "plugins check --json");
  EXPECT_EQ(v.find("name")->as_string(), "abi_good");
  EXPECT_TRUE(v.find("library_loaded")->as_bool()) << r.output;
  // The layout engine may add its own findings (this test plugin declares no layouts);
  // none of them may be about the library or the identity keys.
  for (const auto& p : v.find("problems")->as_array()) {
    EXPECT_FALSE(test::contains(p.as_string(), "library")) << p.as_string();
    EXPECT_FALSE(test::contains(p.as_string(), "api")) << p.as_string();
  }
}

TEST_F(PluginsCli, UsageErrors) {
  EXPECT_EQ(run_moereg("plugins frobnicate").exit_code, 2);
  EXPECT_EQ(run_moereg("plugins show").exit_code, 2);
  EXPECT_EQ(run_moereg("plugins check a b").exit_code, 2);
  auto r = run_moereg("plugins list --plugin-path " + (tmp / "absent"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(test::contains(r.output, "--plugin-path " + (tmp / "absent") + ": not a directory")) << r.output;
}

}  // namespace test_registry_cli
