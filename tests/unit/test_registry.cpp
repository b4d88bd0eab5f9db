// SPDX-License-Identifier: Apache-2.0
// Discovery, trust and loading, on real tiny plugins built by tests/abi/CMakeLists.txt:
// each test asserts the exact refusal text a user would read in `moereg plugins list`.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include "moereg/abi/moereg_abi.h"
#include "moereg/base/error.h"
#include "moereg/registry/plugin_registry.h"
#include "moereg/registry/sha256.h"
#include "abi_plugins.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;
using test::abi_lib;
using test::make_plugin;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_registry {
namespace {

std::string manifest(const std::string& name, const std::string& lib, const std::string& hooks,
                     const std::string& extra = "") {
  return "name: " + name + "\nversion: '0.0.1'\napi_version: 1\nlibrary: " + lib + "\nhooks: " + hooks + "\n" + extra;
}

registry_options options_for(const std::vector<std::string>& paths, const std::string& installed_root) {
  registry_options o;
  o.plugin_paths = paths;
  o.use_environment = false;
  o.installed_root = installed_root;  // an empty temp dir: nothing installed
  return o;
}

const plugin_record& only(const plugin_registry& reg) {
  EXPECT_EQ(reg.records().size(), 1u);
  return reg.records().at(0);
}

class Registry : public ::testing::Test {
 protected:
  test::temp_dir tmp;
  std::string root = tmp / "installed";
  std::string dir = tmp / "plugins";
  void SetUp() override {
    ::chmod(tmp.path().c_str(), 0755);
    fs::create_directories(root);
    fs::create_directories(dir);
  }
};

}  // namespace

TEST_F(Registry, GoodHookPluginLoadsAndItsHooksRun) {
  make_plugin(dir + "/abi_good", manifest("abi_good", "libmoereg_abi_good.so", "[negate, throws]"), "libmoereg_abi_good.so");
  plugin_registry reg(options_for({dir}, root));
  const plugin_record* r = reg.find_family("abi_good");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->state, plugin_state::available) << r->reason;
  EXPECT_EQ(r->source, "--plugin-path");
  const moereg_hooks_api* t = reg.hooks(*r);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(r->state, plugin_state::loaded);
  EXPECT_EQ(std::string(t->name), "abi_good");
  EXPECT_EQ(reg.hooks(*r), t);  // loaded once

  float in[3] = {1, -2, 3}, out[3] = {};
  moereg_tensor_view src{in, MOEREG_DTYPE_F32, 1, {3}, {1}, MOEREG_MEMORY_HOST, 0};
  moereg_tensor_view dst{out, MOEREG_DTYPE_F32, 1, {3}, {1}, MOEREG_MEMORY_HOST, 0};
  throw_if_error(t->transform("negate", MOEREG_DECODE, "k", "{}", &src, &dst), "plugin 'abi_good' hook 'negate'");
  EXPECT_EQ(out[0], -1);
  EXPECT_EQ(out[1], 2);
  EXPECT_EQ(out[2], -3);
  // A C++ exception inside the hook comes back as a status, then as one moereg::error.
  try {
    throw_if_error(t->transform("throws", MOEREG_DECODE, "k", "{}", &src, &dst), "plugin 'abi_good' hook 'throws'");
    FAIL() << "expected moereg::error";
  } catch (const error& e) {
    EXPECT_EQ(std::string(e.what()), "plugin 'abi_good' hook 'throws': kaboom from inside the hook");
  }
}

TEST_F(Registry, LibraryBuiltForAnotherApiVersionIsRefused) {
  make_plugin(dir + "/abi_wrong_api", manifest("abi_wrong_api", "libmoereg_abi_wrong_api.so", "[negate, throws]"),
              "libmoereg_abi_wrong_api.so");
  plugin_registry reg(options_for({dir}, root));
  std::string lib = dir + "/abi_wrong_api/libmoereg_abi_wrong_api.so";
  std::string want = lib + ": plugin API " + std::to_string(MOEREG_PLUGIN_API_VERSION + 1) + ", this moereg accepts " +
                     std::to_string(MOEREG_PLUGIN_API_MIN) + ".." + std::to_string(MOEREG_PLUGIN_API_VERSION);
  try {
    reg.hooks(only(reg));
    FAIL() << "expected moereg::error";
  } catch (const error& e) {
    EXPECT_EQ(std::string(e.what()), "plugin 'abi_wrong_api' refused: " + want);
  }
  EXPECT_EQ(only(reg).state, plugin_state::refused);
  EXPECT_EQ(only(reg).reason, want);
  EXPECT_EQ(reg.find_family("abi_wrong_api"), nullptr);
}

TEST_F(Registry, ManifestApiVersionIsCheckedBeforeAnyLoad) {
  // The library has no entry symbol: had it been opened, that would be the reason.
  make_plugin(dir + "/p", "name: p\nversion: '1'\napi_version: 7\nlibrary: libmoereg_abi_no_entry.so\n",
              "libmoereg_abi_no_entry.so");
  plugin_registry reg(options_for({dir}, root));
  reg.load_all();
  EXPECT_EQ(only(reg).state, plugin_state::refused);
  EXPECT_EQ(only(reg).reason, dir + "/p/plugin.yaml:3: plugin API 7, this moereg accepts 1.." + std::to_string(MOEREG_PLUGIN_API_VERSION));
}

TEST_F(Registry, MissingAndNullEntryAreRefused) {
  make_plugin(dir + "/abi_no_entry", manifest("abi_no_entry", "libmoereg_abi_no_entry.so", "[]"),
              "libmoereg_abi_no_entry.so");
  make_plugin(dir + "/abi_null_entry", manifest("abi_null_entry", "libmoereg_abi_null_entry.so", "[]"),
              "libmoereg_abi_null_entry.so");
  plugin_registry reg(options_for({dir}, root));
  reg.load_all();
  ASSERT_EQ(reg.records().size(), 2u);
  EXPECT_EQ(reg.records()[0].state, plugin_state::refused);
  EXPECT_EQ(reg.records()[0].reason, dir + "/abi_no_entry/libmoereg_abi_no_entry.so: no symbol moereg_hooks_entry, "
                                           "expected a moereg hook library exporting it (extern \"C\" MOEREG_EXPORT)");
  EXPECT_EQ(reg.records()[1].state, plugin_state::refused);
  EXPECT_EQ(reg.records()[1].reason, dir + "/abi_null_entry/libmoereg_abi_null_entry.so: moereg_hooks_entry returned "
                                           "NULL (the library refuses host plugin API " +
                                           std::to_string(MOEREG_PLUGIN_API_VERSION) + ")");
}

TEST_F(Registry, HookNamesMustAgreeBothWays) {
  // Listed but not exported.
  make_plugin(dir + "/abi_only_negate", manifest("abi_only_negate", "libmoereg_abi_only_negate.so", "[negate, throws]"),
              "libmoereg_abi_only_negate.so");
  // Exported but not listed.
  make_plugin(dir + "/abi_good", manifest("abi_good", "libmoereg_abi_good.so", "[negate]"), "libmoereg_abi_good.so");
  plugin_registry reg(options_for({dir}, root));
  reg.load_all();
  ASSERT_EQ(reg.records().size(), 2u);
  std::string p = dir + "/abi_good/";
  EXPECT_EQ(reg.records()[0].reason, p + "libmoereg_abi_good.so: hook 'throws' is exported but not listed in plugin.yaml "
                                         "'hooks' (" + p + "plugin.yaml:5)");
  p = dir + "/abi_only_negate/";
  EXPECT_EQ(reg.records()[1].reason, p + "plugin.yaml:5: hook 'throws' is listed in plugin.yaml but not exported by " + p +
                                         "libmoereg_abi_only_negate.so");
}

TEST_F(Registry, TableNameMustMatchManifest) {
  make_plugin(dir + "/x", manifest("someone_else", "libmoereg_abi_good.so", "[negate, throws]"), "libmoereg_abi_good.so");
  plugin_registry reg(options_for({dir}, root));
  reg.load_all();
  EXPECT_EQ(only(reg).reason, dir + "/x/libmoereg_abi_good.so: library says its plugin is 'abi_good', expected "
                                    "'someone_else' as " + dir + "/x/plugin.yaml:1 names it");
}

TEST_F(Registry, WritableByGroupOrOthersIsRefused) {
  std::string p = dir + "/abi_good";
  make_plugin(p, manifest("abi_good", "libmoereg_abi_good.so", "[negate, throws]"), "libmoereg_abi_good.so");
  ::chmod((p + "/libmoereg_abi_good.so").c_str(), 0775);
  {
    plugin_registry reg(options_for({dir}, root));
    EXPECT_EQ(only(reg).state, plugin_state::refused);
    EXPECT_EQ(only(reg).reason, p + "/libmoereg_abi_good.so: library is writable by group or others (mode 0775), "
                                    "expected no group/other write permission (chmod go-w)");
  }
  ::chmod((p + "/libmoereg_abi_good.so").c_str(), 0755);
  ::chmod(p.c_str(), 0757);
  plugin_registry reg(options_for({dir}, root));
  // The plugin directory is checked with the manifest, before the library.
  EXPECT_EQ(only(reg).reason, p + ": directory of plugin manifest plugin.yaml is writable by group or others (mode "
                                  "0757), expected no group/other write permission (chmod go-w)");
}

TEST_F(Registry, OwnedByAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give a file to another user";
  std::string p = dir + "/abi_good";
  make_plugin(p, manifest("abi_good", "libmoereg_abi_good.so", "[negate, throws]"), "libmoereg_abi_good.so");
  ASSERT_EQ(::chown((p + "/libmoereg_abi_good.so").c_str(), 4242, 4242), 0);
  plugin_registry reg(options_for({dir}, root));
  EXPECT_EQ(only(reg).reason, p + "/libmoereg_abi_good.so: library is owned by uid 4242, expected root or the current "
                                  "user (uid 0)");
}

TEST_F(Registry, PinnedSha256) {
  std::string digest = sha256_file_hex(abi_lib("libmoereg_abi_good.so"));
  std::string p = dir + "/abi_good";
  make_plugin(p, manifest("abi_good", "libmoereg_abi_good.so", "[negate, throws]", "library_sha256: " + digest + "\n"),
              "libmoereg_abi_good.so");
  {
    plugin_registry reg(options_for({dir}, root));
    EXPECT_EQ(only(reg).state, plugin_state::available) << only(reg).reason;
  }
  std::string wrong(64, '0');
  make_plugin(p, manifest("abi_good", "libmoereg_abi_good.so", "[negate, throws]", "library_sha256: " + wrong + "\n"));
  plugin_registry reg(options_for({dir}, root));
  EXPECT_EQ(only(reg).state, plugin_state::refused);
  EXPECT_EQ(only(reg).reason, p + "/plugin.yaml:6: library_sha256 mismatch for " + p + "/libmoereg_abi_good.so, expected " +
                                  wrong + ", found " + digest);
}

TEST_F(Registry, NeverLoadsFromTheCheckpointDirectory) {
  std::string ckpt = tmp / "ckpt";
  make_plugin(ckpt + "/plugins/abi_good", manifest("abi_good", "libmoereg_abi_good.so", "[negate, throws]"),
              "libmoereg_abi_good.so");
  auto opts = options_for({ckpt + "/plugins"}, root);
  opts.forbidden_dirs = {ckpt + "/./"};
  plugin_registry reg(opts);
  EXPECT_EQ(only(reg).state, plugin_state::refused);
  EXPECT_EQ(only(reg).reason, ckpt + "/plugins/abi_good: plugin directory is inside the checkpoint directory " + ckpt +
                                  "; plugins are never loaded from a checkpoint's own directory");
  EXPECT_THROW(reg.hooks(only(reg)), error);
}

TEST_F(Registry, FirstInSearchOrderWinsOthersShadowed) {
  std::string first = tmp / "first", second = tmp / "second";
  make_plugin(first + "/abi_good", manifest("abi_good", "libmoereg_abi_good.so", "[negate, throws]"), "libmoereg_abi_good.so");
  make_plugin(second + "/abi_good", manifest("abi_good", "libmoereg_abi_good.so", "[negate, throws]"), "libmoereg_abi_good.so");
  plugin_registry reg(options_for({first, second}, root));
  ASSERT_EQ(reg.records().size(), 2u);
  EXPECT_EQ(reg.find_family("abi_good")->directory, first + "/abi_good");
  EXPECT_EQ(reg.records()[1].state, plugin_state::shadowed);
  EXPECT_EQ(reg.records()[1].reason, "shadowed by " + first + "/abi_good");
  EXPECT_THROW(reg.hooks(reg.records()[1]), error);
}

TEST_F(Registry, YamlOnlyPluginNeedsNoLibrary) {
  // The search directory may itself be the plugin directory.
  make_plugin(dir, "name: yaml_only\nversion: '2.0'\napi_version: 1\nmodel_types: [yaml_moe]\n");
  plugin_registry reg(options_for({dir}, root));
  const plugin_record& r = only(reg);
  EXPECT_EQ(r.state, plugin_state::loaded);
  EXPECT_EQ(r.directory, dir);
  EXPECT_EQ(r.model_types, (std::vector<std::string>{"yaml_moe"}));
  EXPECT_EQ(reg.hooks(r), nullptr);
}

TEST_F(Registry, EnvironmentPathComesAfterCommandLine) {
  std::string cli = tmp / "cli", env1 = tmp / "env1", env2 = tmp / "env2";
  make_plugin(cli + "/a", "name: a\nversion: '1'\napi_version: 1\n");
  make_plugin(env1 + "/a", "name: a\nversion: '2'\napi_version: 1\n");
  make_plugin(env2 + "/b", "name: b\nversion: '3'\napi_version: 1\n");
  ::setenv("MOEREG_PLUGIN_PATH", (env1 + "::" + env2).c_str(), 1);
  auto opts = options_for({cli}, root);
  opts.use_environment = true;
  plugin_registry reg(opts);
  ::unsetenv("MOEREG_PLUGIN_PATH");
  ASSERT_EQ(reg.search_dirs().size(), 5u);
  EXPECT_EQ(reg.search_dirs()[1].source, "MOEREG_PLUGIN_PATH");
  EXPECT_EQ(reg.search_dirs()[2].path, env2);
  ASSERT_EQ(reg.records().size(), 3u);
  EXPECT_EQ(reg.find_family("a")->version, "1");
  EXPECT_EQ(reg.records()[1].state, plugin_state::shadowed);
  EXPECT_EQ(reg.find_family("b")->source, "MOEREG_PLUGIN_PATH");
}

TEST_F(Registry, AbiSubdirectoryIsPreferred) {
  make_plugin(dir + "/old", "name: old\nversion: '1'\napi_version: 1\n");
  make_plugin(dir + "/abi-" + std::to_string(MOEREG_PLUGIN_API_VERSION) + "/new", "name: new\nversion: '1'\napi_version: 1\n");
  plugin_registry reg(options_for({dir}, root));
  EXPECT_EQ(only(reg).name, "new");
}

TEST_F(Registry, BackendVariantsAreProbedAndTheBestScoreWins) {
  for (const char* v : {"fast", "slow", "none"})
    fs::copy_file(abi_lib(std::string("libmoereg_backend_abitest-") + v + ".so"),
                  dir + "/libmoereg_backend_abitest-" + v + ".so");
  test::write_bytes(dir + "/cuda.unavailable", "nvcc not found when moereg was built\n");
  plugin_registry reg(options_for({dir}, root));
  ASSERT_EQ(reg.records().size(), 4u);
  EXPECT_EQ(reg.records()[0].probe_score, -1);  // not probed until asked
  const plugin_record* b = reg.find_backend("abitest");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->library_path, dir + "/libmoereg_backend_abitest-fast.so");
  EXPECT_EQ(b->state, plugin_state::loaded);
  EXPECT_EQ(b->probe_score, 100);
  EXPECT_EQ(b->version, "fast");
  auto rec = [&](const std::string& file) {
    for (const auto& r : reg.records())
      if (r.library_path == dir + "/" + file) return r;
    ADD_FAILURE() << file;
    return plugin_record{};
  };
  EXPECT_EQ(rec("libmoereg_backend_abitest-slow.so").state, plugin_state::shadowed);
  EXPECT_EQ(rec("libmoereg_backend_abitest-slow.so").reason,
            "outscored by " + dir + "/libmoereg_backend_abitest-fast.so (probe score 100 > 20)");
  EXPECT_EQ(rec("libmoereg_backend_abitest-none.so").state, plugin_state::refused);
  EXPECT_EQ(rec("libmoereg_backend_abitest-none.so").reason,
            dir + "/libmoereg_backend_abitest-none.so: probe says it cannot run here (score 0): no abitest device here");
  EXPECT_EQ(rec("cuda.unavailable").reason, "backend cuda not built: nvcc not found when moereg was built");
  EXPECT_EQ(reg.find_backend("cuda"), nullptr);
  // The table works, and a backend's status reaches the host as one error.
  const moereg_backend_api* t = reg.backend(*b);
  moereg_backend* handle = nullptr;
  try {
    throw_if_error(t->create(nullptr, nullptr, nullptr, &handle), "backend 'abitest'");
    FAIL() << "expected moereg::error";
  } catch (const error& e) {
    EXPECT_EQ(std::string(e.what()), "backend 'abitest': the abitest backend is a registry test fixture and computes nothing "
                                      "(shared expert given: none)");
  }
}

// The first call from any thread probes every backend; threads asking at once all wait for
// that one probe and get the same table (before, a second thread could read the records
// while the first was still writing them).
TEST_F(Registry, BackendsAreProbedOnceWhenManyThreadsAskAtOnce) {
  for (const char* v : {"fast", "slow"})
    fs::copy_file(abi_lib(std::string("libmoereg_backend_abitest-") + v + ".so"),
                  dir + "/libmoereg_backend_abitest-" + v + ".so");
  plugin_registry reg(options_for({dir}, root));
  std::vector<const moereg_backend_api*> tables(8, nullptr);
  std::vector<std::string> errors(tables.size());
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < tables.size(); ++i)
    threads.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < static_cast<int>(tables.size())) std::this_thread::yield();  // all ask at once
      try {
        const plugin_record* b = reg.find_backend("abitest");
        if (b) tables[i] = reg.backend(*b);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (std::size_t i = 0; i < tables.size(); ++i) {
    EXPECT_EQ(errors[i], "");
    ASSERT_NE(tables[i], nullptr) << "thread " << i;
    EXPECT_EQ(tables[i], tables[0]);
  }
  EXPECT_EQ(reg.find_backend("abitest")->version, "fast");
}

TEST_F(Registry, BuildTreeFindsItsOwnBackends) {
  plugin_registry reg(options_for({}, std::string(MOEREG_BUILD_DIR) + "/lib/moereg"));
  const plugin_record* cpu = reg.find_backend("cpu");
  ASSERT_NE(cpu, nullptr) << "libmoereg_backend_cpu.so not found in the build tree";
  EXPECT_EQ(cpu->source, "installed");
  EXPECT_GT(cpu->probe_score, 0);
}

TEST_F(Registry, MissingPluginPathIsAnError) {
  try {
    plugin_registry reg(options_for({tmp / "nope"}, root));
    FAIL() << "expected moereg::error";
  } catch (const error& e) {
    EXPECT_EQ(std::string(e.what()), "--plugin-path " + (tmp / "nope") + ": not a directory, expected a plugin directory");
  }
}

}  // namespace test_registry
