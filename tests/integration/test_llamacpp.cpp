// SPDX-License-Identifier: Apache-2.0
// Real llama.cpp (the pinned prebuilt package, scripts/fetch-llamacpp.sh) loads .gguf files and
// gives the fixtures' transformers logits: max |diff| <= 5 % of max |logit| and the same argmax
// at every position (tests/llamacpp/llamacpp_run.cpp does the run, in a child process).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "moereg/gguf/ggml_dequant.h"
#include "moereg/gguf/gguf_file.h"

#include "conversion_support.h"
#include "test_support.h"

namespace moereg::test {
// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_llamacpp {
namespace {

#ifdef MOEREG_LLAMACPP_RUN
constexpr const char* llamacpp_run = MOEREG_LLAMACPP_RUN;
constexpr const char* llamacpp_lib = MOEREG_LLAMACPP_DIR "/lib";
#else
constexpr const char* llamacpp_run = "";
constexpr const char* llamacpp_lib = "";
#endif

#define SKIP_WITHOUT_LLAMACPP()                                                                                        \
  if (std::string(llamacpp_run).empty() || !std::filesystem::exists(llamacpp_lib))                                   \
  GTEST_SKIP() << "llama.cpp package absent (run scripts/fetch-llamacpp.sh, then re-run cmake)"

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// llama.cpp loads `gguf` and matches `family`'s logits_f32 within the bound.
void expect_llamacpp_matches(const std::string& gguf, const std::string& family) {
  command_result r = run_command(quoted(llamacpp_run) + " logits " + quoted(llamacpp_lib) + " " + quoted(gguf) + " " +
                                 quoted(fixture(family + "/logits.safetensors")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::cout << r.output;
}

TEST(LlamaCpp, LoadsItsOwnConversionsOfTheFixtures) {
  SKIP_WITHOUT_LLAMACPP();
  // The two of llama.cpp's own conversions its loader accepts (fixtures/README.md).
  expect_llamacpp_matches(fixture("gguf_llamacpp/mixtral.gguf"), "mixtral");
  expect_llamacpp_matches(fixture("gguf_llamacpp/deepseek_v3.gguf"), "deepseek_v3");
}

TEST(LlamaCpp, HarnessRejectsLogitsOfAnotherModel) {
  SKIP_WITHOUT_LLAMACPP();
  // Same vocabulary size, other weights: the comparison must fail, so a pass above means something.
  command_result r = run_command(quoted(llamacpp_run) + " logits " + quoted(llamacpp_lib) + " " +
                                 quoted(fixture("gguf_llamacpp/mixtral.gguf")) + " " +
                                 quoted(fixture("deepseek_v3/logits.safetensors")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
}

// ggml's to_float (libggml-base of the package) on the blocks in `bytes` equals moereg's
// decoding bit for bit.
void expect_same_decoding(ggml_type type, const std::string& bytes, const std::string& what) {
  temp_dir dir;
  write_bytes(dir / "in.bin", bytes);
  command_result r = run_command(quoted(llamacpp_run) + " to_float " + quoted(llamacpp_lib) + " " +
                                 std::to_string(static_cast<int>(type)) + " " + quoted(dir / "in.bin") + " " +
                                 quoted(dir / "out.bin"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string theirs = read_bytes(dir / "out.bin");
  const auto& tr = ggml_traits(type);
  std::vector<float> ours(bytes.size() / tr.type_size * tr.block_size);
  ggml_dequantize(type, reinterpret_cast<const std::byte*>(bytes.data()), ours.data(), static_cast<std::int64_t>(ours.size()));
  ASSERT_EQ(theirs.size(), ours.size() * 4) << what;
  for (std::size_t i = 0; i < ours.size(); ++i) {
    float t;
    std::memcpy(&t, theirs.data() + 4 * i, 4);
    if (std::memcmp(&t, &ours[i], 4) != 0) {
      ADD_FAILURE() << what << " " << tr.name << ": value " << i << " (block " << i / tr.block_size << ") is " << ours[i]
                    << ", ggml gives " << t;
      return;
    }
  }
}

TEST(LlamaCpp, GgmlBlocksDecodeBitIdenticalToGgmlOnRandomBlocks) {
  SKIP_WITHOUT_LLAMACPP();
  std::mt19937 rng(16);
  for (ggml_type t : {ggml_type::Q4_0, ggml_type::Q4_1, ggml_type::Q5_0, ggml_type::Q5_1, ggml_type::Q8_0, ggml_type::Q2_K,
                      ggml_type::Q3_K, ggml_type::Q4_K, ggml_type::Q5_K, ggml_type::Q6_K, ggml_type::MXFP4}) {
    // Random bytes everywhere, scales included (so infinities, NaNs and subnormals occur too).
    std::string bytes(ggml_traits(t).type_size * 4096, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng() & 0xFF);
    expect_same_decoding(t, bytes, "random blocks");
  }
}

TEST(LlamaCpp, GgmlBlocksDecodeBitIdenticalToGgmlOnLlamaCppQuantizedFixtures) {
  SKIP_WITHOUT_LLAMACPP();
  for (const char* name : {"gguf_llamacpp/qwen3_moe-q8_0.gguf", "gguf_llamacpp/qwen3_moe-q4_0.gguf"}) {
    gguf_file f(fixture(name));
    int quantized = 0;
    for (const auto& t : f.tensors()) {
      if (!t.quantized()) continue;
      ++quantized;
      expect_same_decoding(t.type, std::string(reinterpret_cast<const char*>(f.data(t)), t.nbytes), t.name);
    }
    EXPECT_GT(quantized, 0) << name;
  }
}

TEST(LlamaCpp, GgufFromAQuantizedThenDequantizedRoundTripMatchesTransformersLogits) {
  SKIP_WITHOUT_LLAMACPP();
  // llama.cpp's Q8_0 file -> hf safetensors (moereg decodes the blocks to bf16, config from the
  // metadata) -> a .gguf by moereg -> llama.cpp: the quantization error stays inside the bound.
  temp_dir d;
  command_result r = run_moereg("convert " + quoted(fixture("gguf_llamacpp/qwen3_moe-q8_0.gguf")) + " " + quoted(d / "hf") +
                                " --to hf --dtype bf16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_moereg("convert " + quoted(d / "hf") + " " + quoted(d / "g") + " --to gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_llamacpp_matches(d / "g/model.gguf", "qwen3_moe");
}

// hf/ -> model.gguf by moereg, then into llama.cpp.
class LlamaCppFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaCppFamily, LoadsMoeregGgufAndMatchesTransformersLogits) {
  SKIP_WITHOUT_LLAMACPP();
  temp_dir out;
  convert(fixture(GetParam() + "/hf"), out.path(), "gguf");
  expect_llamacpp_matches(out / "model.gguf", GetParam());
}

INSTANTIATE_TEST_SUITE_P(Families, LlamaCppFamily,
                         ::testing::Values("qwen3_moe", "mixtral", "deepseek_v2", "deepseek_v3"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace moereg::test

}  // namespace test_llamacpp
