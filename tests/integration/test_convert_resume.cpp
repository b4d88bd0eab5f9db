// SPDX-License-Identifier: Apache-2.0
// convert --resume keeps the shards an interrupted run completed (size and checksum
// checked), redoes the rest, and writes the index last. The interruption is the application
// API's fault injection (a job stopped as a crash would stop it); the resume runs through the
// API and through the binary.
#include <gtest/gtest.h>

#include <filesystem>

#include "moereg/app/convert.h"
#include "moereg/app/verify.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_convert_resume {
namespace {

// Damages one shard the log records as complete. (Which shards completed first depends on
// thread timing, so the log says which.)
void damage_a_logged_shard(const std::string& out, std::size_t expect_logged) {
  json::value log = json::parse_file(out + "/.moereg-resume.json");
  const auto& logged = log.find("shards")->as_object();
  ASSERT_EQ(logged.size(), expect_logged);
  std::string first = out + "/" + logged.begin()->first;
  ASSERT_TRUE(fs::exists(first)) << first;
  std::string bytes = test::read_bytes(first);
  bytes[bytes.size() - 1] ^= 1;
  test::write_bytes(first, bytes);
}

void expect_interrupted(const std::string& out) {
  ASSERT_TRUE(fs::exists(out + "/.moereg-resume.json"));
  int shards = 0;
  for (const auto& e : fs::directory_iterator(out)) shards += e.path().extension() == ".safetensors";
  EXPECT_GE(shards, 3) << "three shards were logged complete; another may have been renamed but not yet logged";
  EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json")) << "an interrupted run must not look complete";
  EXPECT_FALSE(fs::exists(out + "/config.json"));
  EXPECT_THROW(checkpoint::open(out), moereg::error);
}

}  // namespace

TEST(ConvertResume, ContinuesAfterACrashAndRedoesDamagedShards) {
  test::temp_dir d;
  std::string out = d / "out";
  const std::string src = test::fixture("deepseek_v3/hf");
  ASSERT_NO_FATAL_FAILURE(test::interrupted_convert(src, out, "transformers_v5", 60'000, 3));
  ASSERT_NO_FATAL_FAILURE(expect_interrupted(out));
  ASSERT_NO_FATAL_FAILURE(damage_a_logged_shard(out, 3));

  std::string base = "convert " + src + " " + out + " --to transformers_v5";
  std::string args = base + " --shard-size 60KB";
  auto bad = test::run_moereg(base + " --resume --shard-size 1MB");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("another plan (--shard-size was 60000 bytes, now 1000000 bytes)"), std::string::npos) << bad.output;
  bad = test::run_moereg("convert " + src + " " + out + " --to grouped --shard-size 60KB --resume --dtype bf16");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("--dtype was (as stored), now bf16"), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("--to was transformers_v5, now grouped"), std::string::npos) << bad.output;

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

// The same through the API alone: the report counts the shards kept.
TEST(ConvertResume, ThroughTheApi) {
  test::temp_dir d;
  std::string out = d / "out";
  app::convert_request req;
  req.source = test::fixture("deepseek_v3/hf");
  req.output = out;
  req.to = "transformers_v5";
  req.shard_size = 60'000;
  ASSERT_NO_FATAL_FAILURE(test::interrupted_convert(req.source, out, req.to, *req.shard_size, 3));
  ASSERT_NO_FATAL_FAILURE(expect_interrupted(out));
  ASSERT_NO_FATAL_FAILURE(damage_a_logged_shard(out, 3));

  auto refused = app::convert(req);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, app::error_kind::input);
  EXPECT_NE(refused.error().message.find("--resume"), std::string::npos) << refused.error().message;

  req.resume = true;
  auto r = app::convert(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().resumed_shards, 2u) << "three shards were complete, one damaged";
  EXPECT_GT(r.value().shards, 3u);
  EXPECT_FALSE(fs::exists(out + "/.moereg-resume.json"));
  auto v = app::verify({out, test::fixture("deepseek_v3/transformers_v5.safetensors"), {}});
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_TRUE(v.value().equal) << (v.value().differences.empty() ? "" : v.value().differences[0].detail);

  // Once more, on the finished output: it says the job completed (was "no .moereg-resume.json").
  auto again = app::convert(req);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("nothing to resume: the conversion into it completed"), std::string::npos)
      << again.error().message;
}

}  // namespace test_convert_resume
