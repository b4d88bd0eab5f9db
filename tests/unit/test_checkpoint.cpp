// SPDX-License-Identifier: Apache-2.0
// Checkpoint-level errors: every one names the file and the key.
#include <gtest/gtest.h>

#include <filesystem>

#include "moereg/base/error.h"
#include "moereg/checkpoint/checkpoint.h"
#include "test_support.h"

using namespace moereg;
using test::safetensors_image;
using test::temp_dir;
using test::write_bytes;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_checkpoint {
namespace {

std::string u8_tensors_file(const std::vector<std::string>& names) {
  std::string h = "{";
  std::string data;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i) h += ",";
    h += "\"" + names[i] + "\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[" + std::to_string(2 * i) + "," +
         std::to_string(2 * i + 2) + "]}";
    data += "ab";
  }
  return safetensors_image(h + "}", data);
}

std::string open_error(const std::string& dir) {
  try {
    checkpoint::open(dir);
  } catch (const error& e) {
    return e.what();
  }
  ADD_FAILURE() << "opened but should have been refused";
  return {};
}


const char* index_json = R"({"metadata":{"total_size":4},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})";

}  // namespace

TEST(Checkpoint, OpensFixtureDirectoryAndSingleFile) {
  checkpoint c = checkpoint::open(test::fixture("mixtral/hf"));
  EXPECT_TRUE(c.is_directory());
  EXPECT_EQ(c.tensors().size(), 65u);
  EXPECT_EQ(c.config().find("model_type")->as_string(), "mixtral");
  checkpoint f = checkpoint::open(test::fixture("mixtral/transformers_v5.safetensors"));
  EXPECT_FALSE(f.is_directory());
  EXPECT_EQ(f.tensors().size(), 21u);
  EXPECT_NE(f.find("model.layers.1.mlp.experts.gate_up_proj"), nullptr);
}

TEST(Checkpoint, IndexedShards) {
  temp_dir d;
  write_bytes(d / "config.json", "{}");
  write_bytes(d / "s1.safetensors", u8_tensors_file({"a"}));
  write_bytes(d / "s2.safetensors", u8_tensors_file({"b"}));
  write_bytes(d / "model.safetensors.index.json", index_json);
  checkpoint c = checkpoint::open(d.path());
  EXPECT_TRUE(c.has_index());
  EXPECT_EQ(c.tensors().size(), 2u);
  EXPECT_EQ(c.total_bytes(), 4u);
}

// Both a single file and an index of other shards: transformers loads the file, moereg read the
// index; now neither is guessed.
TEST(Checkpoint, ASingleFileBesideAnIndexOfOtherShardsIsRefused) {
  temp_dir d;
  write_bytes(d / "config.json", "{}");
  write_bytes(d / "s1.safetensors", u8_tensors_file({"a"}));
  write_bytes(d / "s2.safetensors", u8_tensors_file({"b"}));
  write_bytes(d / "model.safetensors.index.json", index_json);
  write_bytes(d / "model.safetensors", u8_tensors_file({"a", "b"}));
  std::string m = open_error(d.path());
  EXPECT_HAS(m, "holds both model.safetensors and model.safetensors.index.json, whose shards do not include it");
  // An index whose one shard is model.safetensors is one checkpoint.
  temp_dir e;
  write_bytes(e / "config.json", "{}");
  write_bytes(e / "model.safetensors", u8_tensors_file({"a"}));
  write_bytes(e / "model.safetensors.index.json", R"({"weight_map":{"a":"model.safetensors"}})");
  EXPECT_EQ(checkpoint::open(e.path()).tensors().size(), 1u);
}

TEST(Checkpoint, MissingShard) {
  temp_dir d;
  write_bytes(d / "config.json", "{}");
  write_bytes(d / "s1.safetensors", u8_tensors_file({"a"}));
  write_bytes(d / "model.safetensors.index.json", index_json);
  std::string m = open_error(d.path());
  EXPECT_HAS(m, "model.safetensors.index.json");
  EXPECT_HAS(m, "shard 's2.safetensors' is listed but missing");
}

TEST(Checkpoint, KeyNotInTheShardTheIndexNames) {
  temp_dir d;
  write_bytes(d / "config.json", "{}");
  write_bytes(d / "s1.safetensors", u8_tensors_file({"a", "b"}));
  write_bytes(d / "s2.safetensors", u8_tensors_file({"c"}));
  write_bytes(d / "model.safetensors.index.json",
              R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors","c":"s2.safetensors"}})");
  std::string m = open_error(d.path());
  EXPECT_HAS(m, "tensor 'b' is listed in shard 's2.safetensors' but that shard does not hold it");
}

TEST(Checkpoint, ShardTensorMissingFromIndex) {
  temp_dir d;
  write_bytes(d / "config.json", "{}");
  write_bytes(d / "s1.safetensors", u8_tensors_file({"a", "z"}));
  write_bytes(d / "s2.safetensors", u8_tensors_file({"b"}));
  write_bytes(d / "model.safetensors.index.json", index_json);
  EXPECT_HAS(open_error(d.path()), "tensor 'z' in ");
}

TEST(Checkpoint, DuplicateKeyAcrossShards) {
  temp_dir d;
  write_bytes(d / "config.json", "{}");
  write_bytes(d / "a.safetensors", u8_tensors_file({"x", "dup"}));
  write_bytes(d / "b.safetensors", u8_tensors_file({"dup"}));
  std::string m = open_error(d.path());
  EXPECT_HAS(m, "tensor 'dup' is stored twice");
}

TEST(Checkpoint, DuplicateKeyInIndex) {
  temp_dir d;
  write_bytes(d / "config.json", "{}");
  write_bytes(d / "s1.safetensors", u8_tensors_file({"a"}));
  write_bytes(d / "model.safetensors.index.json", R"({"weight_map":{"a":"s1.safetensors","a":"s1.safetensors"}})");
  std::string m = open_error(d.path());
  EXPECT_HAS(m, "model.safetensors.index.json");
  EXPECT_HAS(m, "duplicate key \"a\"");
}

TEST(Checkpoint, CorruptIndex) {
  temp_dir d;
  write_bytes(d / "config.json", "{}");
  write_bytes(d / "s1.safetensors", u8_tensors_file({"a"}));
  write_bytes(d / "model.safetensors.index.json", R"({"weight_map":{"a":"s1.safe)");
  std::string m = open_error(d.path());
  EXPECT_HAS(m, "model.safetensors.index.json");
  EXPECT_HAS(m, "invalid JSON");
  write_bytes(d / "model.safetensors.index.json", R"({"weights":{}})");
  EXPECT_HAS(open_error(d.path()), "\"weight_map\"");
}

TEST(Checkpoint, MissingConfig) {
  temp_dir d;
  write_bytes(d / "model.safetensors", u8_tensors_file({"a"}));
  EXPECT_HAS(open_error(d.path()), "missing config.json");
}

TEST(Checkpoint, CorruptConfig) {
  temp_dir d;
  write_bytes(d / "config.json", "{\"model_type\": ");
  write_bytes(d / "model.safetensors", u8_tensors_file({"a"}));
  std::string m = open_error(d.path());
  EXPECT_HAS(m, "config.json");
  EXPECT_HAS(m, "invalid JSON");
}

TEST(Checkpoint, CorruptShardNamesTheShard) {
  temp_dir d;
  write_bytes(d / "config.json", "{}");
  write_bytes(d / "model.safetensors", "garbage!garbage!");
  std::string m = open_error(d.path());
  EXPECT_HAS(m, "model.safetensors");
  EXPECT_HAS(m, "header");
}

TEST(Checkpoint, NoSuchPath) { EXPECT_HAS(open_error("/nonexistent/ckpt"), "no such file or directory"); }

}  // namespace test_checkpoint
