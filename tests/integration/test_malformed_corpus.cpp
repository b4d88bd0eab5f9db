// SPDX-License-Identifier: Apache-2.0
// The malformed-input corpora (support/malformed_corpus.h) through the CLI: for every file,
// `moereg inspect` and `moereg convert` exit 1 with a message naming the file and the
// problem, and nothing is written.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "malformed_corpus.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/gguf/gguf_file.h"
#include "test_support.h"

using namespace moereg;
using namespace moereg::test;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_malformed_corpus {
namespace {

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

void run_corpus(const std::vector<malformed_file>& corpus) {
  temp_dir d;
  std::set<std::string> names;
  for (const auto& f : corpus) {
    ASSERT_TRUE(names.insert(f.name).second) << "two corpus files named " << f.name;
    write_bytes(d / f.name, f.bytes);
  }
  for (const auto& f : corpus) {
    SCOPED_TRACE(f.name);
    const std::string path = d / f.name;
    command_result i = run_moereg("inspect '" + path + "'");
    EXPECT_EQ(i.exit_code, 1) << i.output;
    EXPECT_NE(i.output.find(path), std::string::npos) << "message must name the file: " << i.output;
    EXPECT_TRUE(f.refusal_names_problem(i.output)) << "expected '" << f.expect << "' in: " << i.output;
    EXPECT_EQ(i.output.find("internal error"), std::string::npos) << i.output;

    const std::string out = d / ("out_" + f.name);
    command_result c = run_moereg("convert '" + path + "' '" + out + "' --to hf");
    EXPECT_EQ(c.exit_code, 1) << c.output;
    EXPECT_TRUE(f.refusal_names_problem(c.output)) << "expected '" << f.expect << "' in: " << c.output;
    EXPECT_FALSE(fs::exists(out)) << "convert left " << out;
  }
  EXPECT_EQ(entries(d.path()), names) << "something besides the corpus was written";
}

}  // namespace

TEST(MalformedCorpus, TheBaseGgufIsValid) {
  // Every malformed GGUF is a variant of this file, so each refusal is the variant's.
  std::string b = valid_gguf_image();
  auto h = parse_gguf_header(reinterpret_cast<const std::byte*>(b.data()), b.size(), "base.gguf");
  EXPECT_EQ(h.tensors.size(), 2u);
  EXPECT_EQ(h.metadata.size(), 5u);
  temp_dir d;
  write_bytes(d / "base.gguf", b);
  command_result r = run_moereg("inspect '" + d / "base.gguf" + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("blk.0.ffn_gate_exps.weight"), std::string::npos) << r.output;
}

TEST(MalformedCorpus, EveryGgufIsRefusedByTheParserNamingTheProblem) {
  for (const auto& f : malformed_gguf_corpus()) {
    SCOPED_TRACE(f.name);
    try {
      parse_gguf_header(reinterpret_cast<const std::byte*>(f.bytes.data()), f.bytes.size(), f.name);
      ADD_FAILURE() << "accepted";
    } catch (const error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find(f.name + ": gguf header: "), std::string::npos) << m;
      EXPECT_TRUE(f.refusal_names_problem(m)) << "expected '" << f.expect << "' in: " << m;
    }
  }
}

TEST(MalformedCorpus, EveryGgufFailsInspectAndConvertWithExit1AndWritesNothing) { run_corpus(malformed_gguf_corpus()); }

TEST(MalformedCorpus, EverySafetensorsFailsInspectAndConvertWithExit1AndWritesNothing) {
  run_corpus(malformed_safetensors_corpus());
}

// A FIFO where a checkpoint file should be: open(2) of one with no writer blocks, and restarts
// after the signal handlers that let convert stop cleanly, so this used to hang past ^C.
// (`timeout` turns a hang into exit 124, a failure here.)
TEST(MalformedInput, FifoInPlaceOfACheckpointFileIsRefusedNotWaitedOn) {
  temp_dir d;
  for (const char* victim : {"config.json", "model.safetensors", "generation_config.json"}) {
    SCOPED_TRACE(victim);
    const std::string ck = d / (std::string("ck_") + victim), out = d / (std::string("out_") + victim);
    fs::copy(fixture("qwen3_moe/hf"), ck, fs::copy_options::recursive);
    if (std::string(victim) == "model.safetensors") {
      // A shard is read only where the index lists it (a directory scan skips what is not a file).
      const std::string bytes = read_bytes(ck + "/model.safetensors");
      std::uint64_t n = 0;
      std::memcpy(&n, bytes.data(), 8);
      json::object map;
      const json::value header = json::parse(bytes.substr(8, n), "header");
      for (const auto& [name, _] : header.as_object())
        if (name != "__metadata__") map.emplace_back(name, json::value("model.safetensors"));
      write_bytes(ck + "/model.safetensors.index.json",
                  json::dump(json::value(json::object{{"metadata", json::value(json::object{})}, {"weight_map", json::value(map)}})));
    }
    fs::remove(ck + "/" + victim);
    ASSERT_EQ(::mkfifo((ck + "/" + victim).c_str(), 0644), 0);
    const std::string expect = ck + "/" + victim + ": is a FIFO, expected a regular file";
    command_result c = run_command("timeout 60 " + std::string(MOEREG_BUILD_DIR) + "/bin/moereg convert '" + ck + "' '" + out +
                                   "' --to transformers_v5");
    EXPECT_EQ(c.exit_code, 1) << c.output;
    EXPECT_TRUE(contains(c.output, expect)) << c.output;
    EXPECT_FALSE(fs::exists(out)) << "convert left " << out;
    if (std::string(victim) != "generation_config.json") {  // inspect reads headers and config only
      command_result i = run_command("timeout 60 " + std::string(MOEREG_BUILD_DIR) + "/bin/moereg inspect '" + ck + "'");
      EXPECT_EQ(i.exit_code, 1) << i.output;
      EXPECT_TRUE(contains(i.output, expect)) << i.output;
    }
  }
}

// A symlink loop in place of a file: the file system's refusal, said as "path: reason", was an
// "internal error" carrying std::filesystem's own text.
TEST(MalformedInput, SymlinkLoopIsAnInputErrorNamingThePath) {
  temp_dir d;
  const std::string ck = d / "ck", out = d / "out";
  fs::copy(fixture("qwen3_moe/hf"), ck, fs::copy_options::recursive);
  fs::remove(ck + "/config.json");
  fs::create_symlink("config.json", ck + "/config.json");
  for (const std::string& cmd : {"inspect '" + ck + "'", "convert '" + ck + "' '" + out + "' --to transformers_v5"}) {
    command_result c = run_command("timeout 60 " + std::string(MOEREG_BUILD_DIR) + "/bin/moereg " + cmd);
    EXPECT_EQ(c.exit_code, 1) << c.output;
    EXPECT_TRUE(contains(c.output, ck + "/config.json: Too many levels of symbolic links")) << c.output;
    EXPECT_FALSE(contains(c.output, "internal error")) << c.output;
  }
  EXPECT_FALSE(fs::exists(out));
}

// A size that is a JSON boolean: `hidden_size: true` was read as H = 1 and reported as dozens
// of shape mismatches far from the cause.
TEST(MalformedInput, ABooleanWhereAConfigSizeBelongsIsNamed) {
  temp_dir d;
  const std::string ck = d / "ck";
  fs::copy(fixture("qwen3_moe/hf"), ck, fs::copy_options::recursive);
  json::value cfg = json::parse_file(ck + "/config.json");
  cfg.set("hidden_size", json::value(true));
  write_bytes(ck + "/config.json", json::dump(cfg, 2));
  command_result c = run_command(std::string(MOEREG_BUILD_DIR) + "/bin/moereg convert '" + ck + "' '" + (d / "out") +
                                 "' --to transformers_v5");
  EXPECT_EQ(c.exit_code, 1) << c.output;
  EXPECT_TRUE(contains(c.output, ck + "/config.json: field 'hidden_size' is true, expected a number for dims.H")) << c.output;
  EXPECT_FALSE(fs::exists(d / "out"));
}

// One expert stored in another dtype is the one blamed: taking the first expert's type as the
// entry's blamed the seven right ones for expert 0's F16, and listed it as missing besides.
TEST(MalformedInput, TheExpertOfAnotherDtypeIsTheOneBlamed) {
  temp_dir d;
  const std::string ck = d / "ck";
  fs::copy(fixture("qwen3_moe/hf"), ck, fs::copy_options::recursive);
  std::string bytes = read_bytes(ck + "/model.safetensors");
  const std::string odd = "model.layers.1.mlp.experts.0.gate_proj.weight";
  const auto at = bytes.find("\"" + odd + "\"");
  ASSERT_NE(at, std::string::npos);
  const auto type = bytes.find("\"BF16\"", at);
  ASSERT_NE(type, std::string::npos);
  bytes.replace(type, 6, "\"F16\" ");  // same length: JSON whitespace
  write_bytes(ck + "/model.safetensors", bytes);
  command_result c = run_moereg("convert '" + ck + "' '" + (d / "out") + "' --to transformers_v5");
  EXPECT_EQ(c.exit_code, 1) << c.output;
  EXPECT_TRUE(contains(c.output, odd + ": F16, but model.layers.")) << c.output;
  EXPECT_FALSE(contains(c.output, "experts.1.gate_proj.weight: BF16, but")) << c.output;
  EXPECT_FALSE(contains(c.output, "missing expert tensor")) << c.output;
  EXPECT_FALSE(fs::exists(d / "out"));
}

// A list of dense layers that is not one was ignored: every layer was read as an MoE layer.
TEST(MalformedInput, DenseLayerListOfAnotherKindIsRefused) {
  temp_dir d;
  for (const char* bad : {"\"x\"", "[\"1\"]", "[-1]", "{}"}) {
    SCOPED_TRACE(bad);
    const std::string ck = d / "ck";
    fs::remove_all(ck);
    fs::copy(fixture("qwen3_moe/hf"), ck, fs::copy_options::recursive);
    std::string cfg = read_bytes(ck + "/config.json");
    const auto at = cfg.find("\"mlp_only_layers\": []");
    ASSERT_NE(at, std::string::npos);
    cfg.replace(at, 21, std::string("\"mlp_only_layers\": ") + bad);
    write_bytes(ck + "/config.json", cfg);
    command_result c = run_moereg("convert '" + ck + "' '" + (d / "out") + "' --to transformers_v5");
    EXPECT_EQ(c.exit_code, 1) << c.output;
    EXPECT_TRUE(contains(c.output, ck + "/config.json: mlp_only_layers = ")) << c.output;
    EXPECT_TRUE(contains(c.output, "expected a list of decoder layer numbers")) << c.output;
    EXPECT_FALSE(fs::exists(d / "out"));
  }
}

}  // namespace test_malformed_corpus
