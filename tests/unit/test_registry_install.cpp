// SPDX-License-Identifier: Apache-2.0
// The out-of-tree path a vendor takes: `cmake --install` moereg into a prefix, build
// examples/vendor_plugin against it with find_package(moereg) and moereg::sdk, and have the
// INSTALLED binary find, trust and load the result.
#include <gtest/gtest.h>

#include <cstdlib>

#include "moereg/abi/moereg_abi.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_registry_install {
namespace {

test::command_result shell(const std::string& cmd) {
  test::command_result r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
  return r;
}

}  // namespace

TEST(RegistryInstall, VendorPluginBuiltAgainstInstalledSdkLoads) {
  test::temp_dir tmp;
  std::string prefix = tmp / "prefix", build = tmp / "vendor-build";
  std::string cmake = std::string("'") + MOEREG_CMAKE_COMMAND + "'";
  auto r = shell(cmake + " --install '" + MOEREG_BUILD_DIR + "' --prefix '" + prefix + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = shell(cmake + " -S '" + MOEREG_SOURCE_DIR + "/examples/vendor_plugin' -B '" + build + "' -G '" +
            MOEREG_CMAKE_GENERATOR + "' -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH='" + prefix + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = shell(cmake + " --build '" + build + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  std::string moereg = prefix + "/bin/moereg";
  r = shell(moereg + " plugins list --plugin-path '" + build + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "acme_moe        family   1.0.0     " + std::to_string(MOEREG_PLUGIN_API_VERSION) + "    loaded    --plugin-path       " + build + "/acme_moe\n"))
      << r.output;
  // The installed binary finds the installed plugins beside it.
  EXPECT_TRUE(test::contains(r.output, "installed           " + prefix + "/lib/moereg/plugins\n")) << r.output;
  EXPECT_TRUE(test::contains(r.output, "cpu             backend")) << r.output;

  r = shell(moereg + " plugins show acme_moe --plugin-path '" + build + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "  state         loaded\n")) << r.output;
  EXPECT_TRUE(test::contains(r.output, "  library       " + build + "/acme_moe/libmoereg_acme_moe.so\n")) << r.output;
  EXPECT_TRUE(test::contains(r.output, "  hooks         swap_halves\n")) << r.output;

  r = shell(moereg + " plugins check '" + build + "/acme_moe' --plugin-path '" + build + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// The path a program using moereg as a library takes: build examples/library against the
// installed package (find_package(moereg), moereg::moereg) and convert a checkpoint with it.
// The installed libmoereg finds the installed plugins beside itself (<libdir>/moereg), not
// beside the program.
TEST(RegistryInstall, LibraryExampleBuiltAgainstInstalledPackageConverts) {
  test::temp_dir tmp;
  std::string prefix = tmp / "prefix", build = tmp / "example-build";
  std::string cmake = std::string("'") + MOEREG_CMAKE_COMMAND + "'";
  auto r = shell(cmake + " --install '" + MOEREG_BUILD_DIR + "' --prefix '" + prefix + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
#if defined(__SANITIZE_ADDRESS__)
  // The installed libmoereg is instrumented: the program must load the sanitizer runtime first.
  const std::string flags = " '-DCMAKE_CXX_FLAGS=-fsanitize=address,undefined' '-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined'";
#else
  const std::string flags;
#endif
  r = shell(cmake + " -S '" + MOEREG_SOURCE_DIR + "/examples/library' -B '" + build + "' -G '" + MOEREG_CMAKE_GENERATOR +
            "' -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH='" + prefix + "'" + flags);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = shell(cmake + " --build '" + build + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const std::string program = build + "/moereg_convert_example", out = tmp / "out";
  r = shell("MOEREG_PLUGIN_PATH= '" + program + "' '" + test::fixture("qwen3_moe/hf") + "' '" + out + "' transformers_v5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "family qwen3_moe, layout hf")) << r.output;
  EXPECT_TRUE(test::contains(r.output, "converted to transformers_v5")) << r.output;
  r = shell("'" + prefix + "/bin/moereg' verify '" + out + "' '" + test::fixture("qwen3_moe/transformers_v5.safetensors") + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;

  // A problem comes back as a value with its kind and moereg's message.
  r = shell("'" + program + "' /nonexistent/ckpt '" + (tmp / "out2") + "' transformers_v5");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, "cannot open: /nonexistent/ckpt")) << r.output;
}

}  // namespace test_registry_install
