// SPDX-License-Identifier: Apache-2.0
// The reader against every fixture file, and one crafted file per header rule.
#include <gtest/gtest.h>

#include <filesystem>

#include "moereg/base/error.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "test_support.h"

using namespace moereg;
using moereg::test::safetensors_image;
using moereg::test::temp_dir;
using moereg::test::write_bytes;

TEST(SafetensorsReader, ReadsEveryFixtureFile) {
  std::size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(MOEREG_FIXTURES_DIR)) {
    if (e.path().extension() != ".safetensors") continue;
    safetensors_file f(e.path().string());
    ASSERT_FALSE(f.tensors().empty()) << e.path();
    std::uint64_t sum = 0;
    for (const auto& t : f.tensors()) {
      EXPECT_EQ(t.nbytes(), t.numel() * dtype_size(t.type)) << t.name;
      EXPECT_EQ(f.find(t.name), &t);
      sum += t.nbytes();
    }
    EXPECT_EQ(sum, f.data_size());
    EXPECT_EQ(f.data_offset() + f.data_size(), f.file_size());
    EXPECT_EQ(f.data_offset() % 8, 0u) << "fixture headers are padded to 8 bytes";
    ++files;
  }
  EXPECT_GE(files, 20u);
}

TEST(SafetensorsReader, FixtureContentsMatchTheReadme) {
  safetensors_file f(test::fixture("qwen3_moe/hf/model.safetensors"));
  EXPECT_EQ(f.tensors().size(), 69u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const tensor_info* t = f.find("model.layers.1.mlp.experts.7.down_proj.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->type, dtype::BF16);
  EXPECT_EQ(t->shape, (std::vector<std::int64_t>{64, 24}));
  safetensors_file fp8(test::fixture("deepseek_v3_fp8/hf/model.safetensors"));
  EXPECT_EQ(fp8.tensors().size(), 259u);
  std::size_t f8 = 0;
  for (const auto& x : fp8.tensors()) f8 += x.type == dtype::F8_E4M3;
  EXPECT_EQ(f8, 120u);
}

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_safetensors_reader {
namespace {

// Writes a crafted file and returns the reader's message; fails the test if it opens.
std::string open_error(const std::string& bytes) {
  temp_dir d;
  std::string path = d / "bad.safetensors";
  write_bytes(path, bytes);
  try {
    safetensors_file f(path);
  } catch (const error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << "message must name the file: " << msg;
    EXPECT_NE(msg.find("header"), std::string::npos) << "message must say header: " << msg;
    return msg;
  }
  ADD_FAILURE() << "file opened but should have been refused";
  return {};
}

std::string one_tensor(const std::string& fields) { return R"({"t":{)" + fields + "}}"; }


}  // namespace

TEST(SafetensorsReaderRules, FileShorterThanEightBytes) { EXPECT_HAS(open_error("abc"), "expected at least 8"); }

TEST(SafetensorsReaderRules, HeaderLengthOverLimit) {
  std::string b(8, '\0');
  std::uint64_t n = 100'000'001;
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  EXPECT_HAS(open_error(b + "{}"), "exceeds the limit of 100000000");
}

TEST(SafetensorsReaderRules, HeaderLengthPastEndOfFile) {
  std::string img = safetensors_image("{}", "");
  img[0] = 100;
  EXPECT_HAS(open_error(img), "runs past the end of the file");
}

TEST(SafetensorsReaderRules, HeaderNotUtf8) {
  EXPECT_HAS(open_error(safetensors_image("{\"\xff\":1}", "")), "UTF-8");
}

TEST(SafetensorsReaderRules, HeaderNotJson) { EXPECT_HAS(open_error(safetensors_image("{nope", "")), "invalid JSON"); }

TEST(SafetensorsReaderRules, HeaderNotAnObject) { EXPECT_HAS(open_error(safetensors_image("[1,2]", "")), "JSON object"); }

TEST(SafetensorsReaderRules, DuplicateTensorKey) {
  std::string t = R"("dtype":"U8","shape":[1],"data_offsets":[0,1])";
  EXPECT_HAS(open_error(safetensors_image("{\"a\":{" + t + "},\"a\":{" + t + "}}", "x")), "duplicate key \"a\"");
}

TEST(SafetensorsReaderRules, UnknownDtype) {
  std::string m = open_error(safetensors_image(one_tensor(R"("dtype":"F7","shape":[1],"data_offsets":[0,1])"), "x"));
  EXPECT_HAS(m, "tensor 't'");
  EXPECT_HAS(m, "unknown dtype 'F7'");
  EXPECT_HAS(m, "BF16");
}

TEST(SafetensorsReaderRules, NegativeShape) {
  EXPECT_HAS(open_error(safetensors_image(one_tensor(R"("dtype":"U8","shape":[-1],"data_offsets":[0,0])"), "")),
             "non-negative");
}

TEST(SafetensorsReaderRules, NonIntegerShape) {
  EXPECT_HAS(open_error(safetensors_image(one_tensor(R"("dtype":"U8","shape":[1.5],"data_offsets":[0,1])"), "x")),
             "non-negative integers");
}

TEST(SafetensorsReaderRules, ElementCountOverflows) {
  std::string m = open_error(safetensors_image(
      one_tensor(R"("dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8])"), "12345678"));
  EXPECT_HAS(m, "overflows");
  EXPECT_HAS(m, "tensor 't'");
}

TEST(SafetensorsReaderRules, ByteSizeTimesDtypeOverflows) {
  EXPECT_HAS(open_error(safetensors_image(one_tensor(R"("dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8])"), "12345678")),
             "overflows");
}

TEST(SafetensorsReaderRules, ReversedOffsets) {
  EXPECT_HAS(open_error(safetensors_image(one_tensor(R"("dtype":"U8","shape":[0],"data_offsets":[4,0])"), "1234")), "reversed");
}

TEST(SafetensorsReaderRules, SpanDisagreesWithShape) {
  std::string m = open_error(safetensors_image(one_tensor(R"("dtype":"BF16","shape":[2,2],"data_offsets":[0,6])"), "123456"));
  EXPECT_HAS(m, "span 6 bytes, expected 8");
}

TEST(SafetensorsReaderRules, OverlappingRanges) {
  std::string h = R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})";
  EXPECT_HAS(open_error(safetensors_image(h, "123456")), "overlaps");
}

TEST(SafetensorsReaderRules, GapBetweenRanges) {
  std::string h = R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}})";
  EXPECT_HAS(open_error(safetensors_image(h, "12345")), "gap");
}

TEST(SafetensorsReaderRules, FirstRangeNotAtZero) {
  EXPECT_HAS(open_error(safetensors_image(one_tensor(R"("dtype":"U8","shape":[2],"data_offsets":[1,3])"), "123")),
             "expected 0");
}

TEST(SafetensorsReaderRules, RangesDoNotCoverDataSection) {
  std::string m = open_error(safetensors_image(one_tensor(R"("dtype":"U8","shape":[2],"data_offsets":[0,2])"), "1234"));
  EXPECT_HAS(m, "covers 2 bytes, but the data section holds 4");
}

TEST(SafetensorsReaderRules, RangePastEndOfFile) {
  std::string m = open_error(safetensors_image(one_tensor(R"("dtype":"U8","shape":[8],"data_offsets":[0,8])"), "12"));
  EXPECT_HAS(m, "covers 8 bytes, but the data section holds 2");
}

TEST(SafetensorsReaderRules, MetadataValueNotAString) {
  EXPECT_HAS(open_error(safetensors_image(R"({"__metadata__":{"format":1}})", "")), "__metadata__ value of 'format' must be a string");
}

TEST(SafetensorsReaderRules, MetadataNotAnObject) {
  EXPECT_HAS(open_error(safetensors_image(R"({"__metadata__":"pt"})", "")), "__metadata__ must be an object");
}

TEST(SafetensorsReaderRules, MissingFields) {
  EXPECT_HAS(open_error(safetensors_image(one_tensor(R"("dtype":"U8","shape":[1])"), "x")), "dtype, shape and data_offsets");
}

TEST(SafetensorsReaderRules, AcceptsEmptyTensorsAndPaddedHeader) {
  temp_dir d;
  std::string path = d / "ok.safetensors";
  std::string h = R"({"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  write_bytes(path, safetensors_image(h + "   ", "ab"));
  safetensors_file f(path);
  EXPECT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.find("e")->nbytes(), 0u);
}

}  // namespace test_safetensors_reader
