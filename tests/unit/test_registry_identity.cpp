// SPDX-License-Identifier: Apache-2.0
// The registry's half of plugin.yaml: identity keys, each problem with file:line, all at once.
#include <gtest/gtest.h>

#include "moereg/abi/moereg_abi.h"
#include "moereg/registry/plugin_identity.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_registry_identity {
namespace {

plugin_identity read(const test::temp_dir& d, const std::string& yaml) {
  test::write_bytes(d / "plugin.yaml", yaml);
  return read_plugin_identity(d / "plugin.yaml");
}

}  // namespace

TEST(RegistryIdentity, GoodManifest) {
  test::temp_dir d;
  test::write_bytes(d / "libmoereg_x.so", "not really a library");
  auto m = read(d,
                "name: x\nversion: \"1.2\"\napi_version: 1\ndescription: an example\nmodel_types: [x_moe, x2_moe]\n"
                "library: libmoereg_x.so\nhooks: [a, b]\nlayouts: {}\n");
  EXPECT_TRUE(m.errors.empty()) << m.errors[0];
  EXPECT_TRUE(m.warnings.empty());
  EXPECT_EQ(m.name, "x");
  EXPECT_EQ(m.version, "1.2");
  EXPECT_EQ(m.api_version, 1);
  EXPECT_EQ(m.model_types, (std::vector<std::string>{"x_moe", "x2_moe"}));
  EXPECT_EQ(m.hooks, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(m.where("hooks"), (d / "plugin.yaml") + ":7");
}

TEST(RegistryIdentity, EveryProblemWithItsLine) {
  test::temp_dir d;
  std::string f = d / "plugin.yaml";
  auto m = read(d,
                "name: Bad-Name\n"             // 1
                "api_version: 9\n"             // 2
                "model_types: qwen\n"          // 3
                "library: ../evil.so\n"        // 4
                "library_sha256: abc\n"        // 5
                "hooks: [ok, 'no way', ok]\n"  // 6
                "colour: blue\n");             // 7
  std::vector<std::string> want = {
      f + ":1: 'name' must be a name of [a-z0-9_]+, found 'Bad-Name'",
      f + ":1: missing required key 'version', expected a version string",
      f + ":2: plugin API 9, this moereg accepts 1.." + std::to_string(MOEREG_PLUGIN_API_VERSION),
      f + ":3: 'model_types' must be a list of strings, found 'qwen'",
      f + ":6: each entry of 'hooks' must be a hook name ([A-Za-z_][A-Za-z0-9_]*), found 'no way'",
      f + ":6: 'hooks' lists 'ok' twice",
      f + ":4: 'library' must be a file name in the plugin directory, found '../evil.so'",
      f + ":5: 'library_sha256' must be 64 hexadecimal digits, found 'abc'",
  };
  EXPECT_EQ(m.errors, want);
  ASSERT_EQ(m.warnings.size(), 1u);
  EXPECT_EQ(m.warnings[0].rfind(f + ":7: unknown top-level key 'colour', expected one of name, version", 0), 0u)
      << m.warnings[0];
}

TEST(RegistryIdentity, MissingLibraryFileAndHooksWithoutLibrary) {
  test::temp_dir d;
  std::string f = d / "plugin.yaml";
  auto m = read(d, "name: x\nversion: '1'\napi_version: 1\nlibrary: libmoereg_x.so\n");
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_EQ(m.errors[0], f + ":4: library 'libmoereg_x.so' not found, expected the file " + (d / "libmoereg_x.so"));
  m = read(d, "name: x\nversion: '1'\napi_version: 1\nhooks: [a]\n");
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_EQ(m.errors[0], f + ":4: 'hooks' lists 1 hook(s), expected a 'library' that exports them");
}

TEST(RegistryIdentity, SyntaxErrorAndNonMapping) {
  test::temp_dir d;
  std::string f = d / "plugin.yaml";
  auto m = read(d, "name: x\nversion: [1\n");
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_EQ(m.errors[0].rfind(f + ":3:", 0), 0u) << m.errors[0];
  EXPECT_NE(m.errors[0].find(": YAML syntax error: "), std::string::npos) << m.errors[0];
  // A key given twice is refused naming both lines (yaml-cpp alone keeps the first).
  m = read(d, "name: x\nversion: '1'\napi_version: 1\nname: y\n");
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_EQ(m.errors[0], f + ":4:1: duplicate key 'name' (first given at line 1); each key may appear once in a map");
  m = read(d, "- just\n- a list\n");
  ASSERT_EQ(m.errors.size(), 1u);
  EXPECT_EQ(m.errors[0], f + ":1: plugin.yaml must be a mapping of keys (name, version, api_version...), found a list");
}

}  // namespace test_registry_identity
