// SPDX-License-Identifier: Apache-2.0
// convert --resume keeps the shards an interrupted run completed (size and checksum
// checked), redoes the rest, and writes the index last.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>

#include "moereg/base/error.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/base/json.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

TEST(ConvertResume, ContinuesAfterACrashAndRedoesDamagedShards) {
  test::temp_dir d;
  std::string out = d / "out";
  std::string base = "convert " + test::fixture("deepseek_v3/hf") + " " + out + " --to transformers_v5";
  std::string args = base + " --shard-size 60KB";
  // Simulate a crash (the process dies without unwinding) after three shards are complete.
  int status = std::system(("MOEREG_CRASH_AFTER_SHARDS=3 " + std::string(MOEREG_BUILD_DIR) + "/bin/moereg " + args +
                            " >/dev/null 2>&1").c_str());
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 70);
  ASSERT_TRUE(fs::exists(out + "/.moereg-resume.json"));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(out)) shards += e.path().extension() == ".safetensors";
  EXPECT_GE(shards, 3) << "three shards were logged complete; another may have been renamed but not yet logged";
  EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json")) << "an interrupted run must not look complete";
  EXPECT_FALSE(fs::exists(out + "/config.json"));
  EXPECT_THROW(checkpoint::open(out), moereg::error);

  // Damage one shard the log records as complete: resume must notice and rewrite it. (Which
  // three shards completed first depends on thread timing, so the log says which.)
  json::value log = json::parse_file(out + "/.moereg-resume.json");
  const auto& logged = log.find("shards")->as_object();
  ASSERT_EQ(logged.size(), 3u);
  std::string first = out + "/" + logged.begin()->first;
  ASSERT_TRUE(fs::exists(first)) << first;
  std::string bytes = test::read_bytes(first);
  bytes[bytes.size() - 1] ^= 1;
  test::write_bytes(first, bytes);

  auto bad = test::run_moereg(base + " --resume --shard-size 1MB");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("another plan"), std::string::npos) << bad.output;

  auto again = test::run_moereg(args);
  EXPECT_EQ(again.exit_code, 1) << "a non-empty OUT needs --resume";
  EXPECT_NE(again.output.find("--resume"), std::string::npos) << again.output;

  auto res = test::run_moereg(args + " --resume");
  ASSERT_EQ(res.exit_code, 0) << res.output;
  EXPECT_NE(res.output.find("resuming: 2 of"), std::string::npos) << "three shards were complete, one damaged: " << res.output;
  EXPECT_NE(res.output.find("writing it again"), std::string::npos) << res.output;
  EXPECT_FALSE(fs::exists(out + "/.moereg-resume.json"));
  auto v = test::run_moereg("verify " + out + " " + test::fixture("deepseek_v3/transformers_v5.safetensors"));
  EXPECT_EQ(v.exit_code, 0) << v.output;
}
