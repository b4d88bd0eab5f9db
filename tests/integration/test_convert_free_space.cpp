// SPDX-License-Identifier: Apache-2.0
// A conversion larger than the free space of its output's filesystem is refused before the
// first byte, saying how much it writes and how much is free; a resume needs room only for
// the shards it still writes. The free space is the API's fault injection
// (fault_injection::free_bytes), since a test cannot fill a real filesystem.
#include <gtest/gtest.h>

#include <filesystem>

#include "moereg/app/convert.h"
#include "moereg/base/json.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_convert_free_space {
namespace {

app::convert_request request(const std::string& out) {
  app::convert_request req;
  req.source = test::fixture("deepseek_v3/hf");
  req.output = out;
  req.to = "transformers_v5";
  req.shard_size = 60'000;
  return req;
}

// The bytes of the shards the resume log records as complete (another may have been renamed
// into place but not yet logged: a resume writes that one again).
std::uint64_t logged_bytes(const std::string& dir) {
  std::uint64_t n = 0;
  const json::value log = json::parse_file(dir + "/.moereg-resume.json");
  for (const auto& [name, entry] : log.find("shards")->as_object())
    n += fs::file_size(fs::path(dir) / name);
  return n;
}

}  // namespace

TEST(ConvertFreeSpace, RefusedBeforeTheFirstByte) {
  test::temp_dir d;
  const std::string out = d / "out";
  app::convert_request req = request(out);
  req.fault.free_bytes = 100'000;
  auto r = app::convert(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, app::error_kind::input);
  const std::string& m = r.error().message;
  EXPECT_NE(m.find(out + ": the conversion writes "), std::string::npos) << m;
  EXPECT_NE(m.find("files) and the filesystem there has 100 kB free"), std::string::npos) << m;
  if (fs::exists(out))
    for (const auto& e : fs::directory_iterator(out)) ADD_FAILURE() << "left behind: " << e.path();

  // With room for it, the same job completes.
  req.fault.free_bytes = std::uint64_t{1} << 40;
  auto ok = app::convert(req);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
}

TEST(ConvertFreeSpace, AResumeNeedsRoomForTheRestOnly) {
  test::temp_dir d;
  const std::string out = d / "out";
  app::convert_request req = request(out);
  ASSERT_NO_FATAL_FAILURE(test::interrupted_convert(req.source, out, req.to, *req.shard_size, 3));
  const std::uint64_t kept = logged_bytes(out);
  ASSERT_GT(kept, 65'536u) << "three shards of up to 60 kB were kept, more than the margin below";

  // Room for everything but the kept shards: more than the rest, less than the whole.
  app::convert_request plan = request(d / "plan");
  plan.dry_run = true;
  auto dry = app::convert(plan);
  ASSERT_TRUE(dry.ok()) << dry.error().message;
  const std::uint64_t whole = dry.value().total_bytes;
  ASSERT_GT(whole, kept);
  req.resume = true;
  req.fault.free_bytes = whole - kept + 32'768;  // the headers of the shards still to write
  auto r = app::convert(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_GE(r.value().resumed_shards, 3u);

  // A fresh job with that little room is refused.
  test::temp_dir d2;
  app::convert_request fresh = request(d2 / "out");
  fresh.fault.free_bytes = whole - kept + 32'768;
  auto refused = app::convert(fresh);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("the filesystem there has"), std::string::npos) << refused.error().message;
}

// --ep N: the first slice's check counts every slice still to write (an even split makes them
// the same size), so room for one slice is not enough for two.
TEST(ConvertFreeSpace, ExpertParallelSlicesCountTogether) {
  test::temp_dir d;
  app::convert_request req = request(d / "measure");
  req.shard_size = 0;
  req.expert_parallel = 2;
  auto measured = app::convert(req);
  ASSERT_TRUE(measured.ok()) << measured.error().message;
  std::uint64_t slice = 0;
  for (const auto& e : fs::directory_iterator(d / "measure/ep-0-of-2"))
    if (e.path().extension() == ".safetensors") slice += fs::file_size(e.path());
  ASSERT_GT(slice, 0u);

  req.output = d / "tight";
  req.fault.free_bytes = slice + slice / 2;
  auto refused = app::convert(req);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("(2 files in 2 slices) and the filesystem there has"), std::string::npos)
      << refused.error().message;
  EXPECT_FALSE(fs::exists(d / "tight")) << "a new OUT that got nothing is removed";

  req.output = d / "room";
  req.fault.free_bytes = 2 * slice + 65'536;
  auto ok = app::convert(req);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
}

}  // namespace test_convert_free_space

// A refused job into a/b/c removed c but left the parents a/b it had made.
TEST(ConvertFreeSpace, ARefusedJobLeavesNoParentsItMade) {
  test::temp_dir d;
  app::convert_request req;
  req.source = test::fixture("qwen3_moe/hf");
  req.output = d / "a/b/c";
  req.to = "transformers_v5";
  req.fault.free_bytes = 1;
  auto r = app::convert(req);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("free"), std::string::npos) << r.error().message;
  EXPECT_FALSE(std::filesystem::exists(d / "a")) << "the parents the job made are left";
  std::filesystem::create_directories(d / "kept/x");
  req.output = d / "kept/x/y/z";
  r = app::convert(req);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(std::filesystem::exists(d / "kept/x/y"));
  EXPECT_TRUE(std::filesystem::exists(d / "kept/x")) << "a parent that was there before is removed";
}
