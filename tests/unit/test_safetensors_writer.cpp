// SPDX-License-Identifier: Apache-2.0
// The writer reproduces the Python library's files byte for byte, and never leaves a
// complete-looking file when it does not finish.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include "moereg/base/error.h"
#include "moereg/base/partial_file.h"

#include "moereg/checkpoint/checkpoint.h"
#include "moereg/checkpoint/checkpoint_writer.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_safetensors_writer {
namespace {

// Rewrite every tensor of a file through the writer, in the order the Python library uses.
void rewrite(const safetensors_file& in, const std::string& out_path, bool shuffle_writes) {
  std::vector<tensor_spec> specs;
  for (const auto& t : in.tensors()) specs.push_back({t.name, t.type, t.shape});
  sort_like_safetensors(specs);
  safetensors_writer w(out_path, specs, in.metadata());
  std::vector<std::size_t> order(w.tensors().size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = shuffle_writes ? order.size() - 1 - i : i;
  for (std::size_t i : order) {
    const tensor_info* src = in.find(w.tensors()[i].name);
    // Two halves, to exercise offsets within a tensor.
    std::uint64_t half = src->nbytes() / 2;
    w.write(i, half, in.data(*src) + half, src->nbytes() - half);
    w.write(i, 0, in.data(*src), half);
  }
  w.commit();
}

// The tensors of `in` cut into shards of about 50 kB: a writer into `out` with every shard
// written and committed (the caller finishes it).
std::unique_ptr<checkpoint_writer> write_sharded(const safetensors_file& in, const std::string& out) {
  std::vector<tensor_spec> specs;
  for (const auto& t : in.tensors()) specs.push_back({t.name, t.type, t.shape});
  checkpoint_writer_options o;
  o.shard_size = 50'000;
  auto w = std::make_unique<checkpoint_writer>(out, plan_shards(specs, o));
  for (std::size_t s = 0; s < w->shards().size(); ++s) {
    auto& f = static_cast<safetensors_writer&>(w->open_shard(s, {{"format", "pt"}}));
    for (std::size_t i = 0; i < f.tensors().size(); ++i) {
      const tensor_info* src = in.find(f.tensors()[i].name);
      f.write(i, 0, in.data(*src), src->nbytes());
    }
    w->commit_shard();
  }
  return w;
}

}  // namespace

TEST(SafetensorsWriter, ReproducesFixtureFilesByteForByte) {
  for (const char* rel : {"qwen3_moe/hf/model.safetensors", "deepseek_v3_fp8/hf/model.safetensors",
                          "qwen3_vl_moe/transformers_v5.safetensors"}) {
    test::temp_dir d;
    safetensors_file in(test::fixture(rel));
    std::string out = d / "out.safetensors";
    rewrite(in, out, true);
    EXPECT_EQ(test::read_bytes(out), test::read_bytes(test::fixture(rel))) << rel;
  }
}

TEST(SafetensorsWriter, UncommittedWriterLeavesNothing) {
  test::temp_dir d;
  std::string out = d / "model.safetensors";
  {
    safetensors_writer w(out, {{"a", dtype::F32, {4}}});
    float x[4] = {1, 2, 3, 4};
    w.write(0, 0, x, 8);  // half written
    EXPECT_TRUE(fs::exists(w.temp_path()));
  }
  EXPECT_TRUE(fs::is_empty(d.path()));
}

// Two writers of one file: the second says another process writes it (was "cannot create:
// File exists"), and leaves the first's temporary alone.
TEST(PartialFile, ASecondWriterOfOneFileSaysAnotherProcessWritesIt) {
  test::temp_dir d;
  const std::string out = d / "o.safetensors";
  partial_file first(out, 16);
  try {
    partial_file second(out, 16);
    ADD_FAILURE() << "a second writer of one file was let in";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find(".o.safetensors.partial: exists: another process is writing " + out + " now"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(std::filesystem::exists(d / ".o.safetensors.partial"));
}

TEST(SafetensorsWriter, CommitRefusesMissingBytes) {
  test::temp_dir d;
  safetensors_writer w(d / "m.safetensors", {{"a", dtype::F32, {4}}});
  float x[4] = {1, 2, 3, 4};
  w.write(0, 0, x, 8);
  EXPECT_THROW(w.commit(), moereg::error);
  EXPECT_FALSE(fs::exists(d / "m.safetensors"));
}

TEST(CheckpointWriter, ShardsIndexAndConfigRoundTrip) {
  test::temp_dir d;
  safetensors_file in(test::fixture("qwen3_moe/hf/model.safetensors"));
  std::string out = d / "ckpt";
  auto writer = write_sharded(in, out);
  checkpoint_writer& w = *writer;
  ASSERT_GT(w.shards().size(), 2u);
  w.write_file("config.json", test::read_bytes(test::fixture("qwen3_moe/hf/config.json")));
  w.finish(true);
  checkpoint c = checkpoint::open(out);
  EXPECT_TRUE(c.has_index());
  EXPECT_EQ(c.files().size(), w.shards().size());
  ASSERT_EQ(c.tensors().size(), in.tensors().size());
  for (const auto& e : c.tensors()) {
    const tensor_info* src = in.find(e.info->name);
    ASSERT_NE(src, nullptr);
    EXPECT_EQ(std::memcmp(e.data(), in.data(*src), src->nbytes()), 0) << e.info->name;
  }
  std::string index = test::read_bytes(out + "/model.safetensors.index.json");
  EXPECT_NE(index.find("\"total_size\": " + std::to_string(in.data_size())), std::string::npos) << index;
}

// A shard that is not in OUT when the output is completed (under MPI: written by a process whose
// OUT was another directory at the same path) is an error, and no index is written.
TEST(CheckpointWriter, FinishRefusesAShardMissingFromTheOutput) {
  test::temp_dir d;
  safetensors_file in(test::fixture("qwen3_moe/hf/model.safetensors"));
  std::string out = d / "ckpt";
  auto writer = write_sharded(in, out);
  checkpoint_writer& w = *writer;
  ASSERT_GT(w.shards().size(), 2u);
  const std::string gone = out + "/" + w.shards()[1].file_name;
  std::filesystem::remove(gone);
  try {
    w.finish(true);
    ADD_FAILURE() << "finished without " << gone;
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find(gone + ": missing when the output was to be completed"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(out + "/model.safetensors.index.json"));
}

TEST(CheckpointWriter, InterruptedRunLeavesNoCompleteLookingOutput) {
  test::temp_dir d;
  std::string out = d / "ckpt";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: write one of two shards completely, start the second, then die hard.
    std::vector<tensor_spec> specs = {{"a", dtype::U8, {1024}}, {"b", dtype::U8, {1024}}};
    checkpoint_writer_options o;
    o.shard_size = 1024;
    checkpoint_writer w(out, plan_shards(specs, o));
    std::string bytes(1024, 'x');
    w.open_shard(0, {}).write(0, 0, bytes.data(), 1024);
    w.commit_shard();
    w.open_shard(1, {}).write(0, 0, bytes.data(), 512);
    ::kill(::getpid(), SIGKILL);
    _exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(out + "/config.json"));
  EXPECT_FALSE(fs::exists(out + "/model-00002-of-00002.safetensors"));
  EXPECT_THROW(checkpoint::open(out), moereg::error);
}

TEST(CheckpointWriter, FailedRunRemovesTheDirectoryItCreated) {
  test::temp_dir d;
  std::string out = d / "ckpt";
  {
    checkpoint_writer w(out, plan_shards({{"a", dtype::U8, {8}}}, {}));
    w.open_shard(0, {});
    // Destroyed without finish(): as when an exception unwinds a conversion.
  }
  EXPECT_FALSE(fs::exists(out));
}

TEST(CheckpointWriter, RefusesNonEmptyOutputDirectory) {
  test::temp_dir d;
  test::write_bytes(d / "x", "y");
  EXPECT_THROW(checkpoint_writer(d.path(), plan_shards({{"a", dtype::U8, {8}}}, {})), moereg::error);
  EXPECT_TRUE(fs::exists(d / "x"));
}

}  // namespace test_safetensors_writer

// A hidden file's temporary had two dots (..moereg-resume.json.partial); a full filesystem's
// error says what to look at (blocks and inodes are both "No space left on device").
TEST(PartialFile, TemporaryNamesAndFullDiskText) {
  EXPECT_EQ(partial_path_of("/o/model-00001-of-00002.safetensors"), "/o/.model-00001-of-00002.safetensors.partial");
  EXPECT_EQ(partial_path_of("/o/.moereg-resume.json"), "/o/.moereg-resume.json.partial");
  EXPECT_NE(io_error_text(ENOSPC).find("df -h and df -i"), std::string::npos);
  EXPECT_EQ(io_error_text(EACCES), std::string(std::strerror(EACCES)));
}
