// SPDX-License-Identifier: Apache-2.0
// `moereg convert --config RECIPE`: every value a recipe gives that turns out wrong, whether
// checked when the recipe is read or only against the checkpoint, is reported at the recipe's
// file:line:column with what was expected, exit 1, nothing written; and the command line wins
// over the recipe, saying so.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "test_support.h"

namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_convert_recipe {
namespace {

struct bad_value {
  std::string lines;     // the recipe after `source` and `output` (lines 1 and 2)
  std::string extra;     // command-line options beside --config
  std::string expected;  // after "r.yaml:"
  std::string also;      // what the message says was expected
};

// Found by a tester: `dtype: fp16` was a usage error (exit 2) naming --dtype and no file;
// `experts: "0:64"` on 8 experts, `to: transformer_v5` and `to: 5` named no file or line.
TEST(ConvertRecipe, BadValuesNameFileLineAndColumn) {
  moereg::test::temp_dir d;
  const std::string src = moereg::test::fixture("qwen3_moe/hf");  // E = 8, stored as hf
  const std::string out = d / "out";
  const std::vector<bad_value> cases = {
      // Checked when the recipe is read.
      {"to: transformers_v5\ndtype: fp16\n", "", "4:1: dtype 'fp16': expected bf16", "or f32"},
      {"to: transformers_v5\nthreads: many\n", "", "4:1: threads 'many': expected an integer from 0 to 4096", ""},
      {"to: transformers_v5\nshard_size: 5 parsecs\n", "", "4:1: shard_size '5 parsecs': expected a size like 5GB", ""},
      {"to: transformers_v5\nexperts: \"5:2\"\n", "", "4:1: experts '5:2': expected A:B with integers 0 <= A < B", ""},
      {"to: transformers_v5\nexperts: \"0:4\"\n", "--ep 2", "4:1: experts '0:4': expected no expert range with --ep N", ""},
      {"to: transformers_v5\ndry_run: yes\n", "", "4:1: dry_run 'yes': expected true or false", ""},
      // Checked against the checkpoint, after it is opened.
      {"to: transformers_v5\nexperts: \"0:64\"\n", "", "4:1: experts '0:64': ", "within 0:8 (E=8)"},
      {"to: transformer_v5\n", "", "3:1: to 'transformer_v5': ", "(it has: hf, hf_split, transformers_v4, transformers_v5"},
      {"to: 5\n", "", "3:1: to '5': ", "(it has: hf, "},
      {"to: grouped\nfrom: transformers_v5\n", "", "4:1: from 'transformers_v5': ", "layout 'transformers_v5'"},
      {"to: grouped\nfamily: nosuch\n", "", "4:1: family 'nosuch': ", "known model types: "},
      {"to: grouped\ndtype: f32\n", "", "4:1: dtype 'f32': ", "a safetensors checkpoint of BF16 experts"},
      // Two bad values: the one the job refuses first is named (the layout, before the range).
      {"to: transformer_v5\nexperts: \"0:64\"\n", "", "3:1: to 'transformer_v5': ", "has no layout"},
  };
  for (const auto& c : cases) {
    moereg::test::write_bytes(d / "r.yaml", "source: " + src + "\noutput: " + out + "\n" + c.lines);
    auto r = moereg::test::run_moereg("convert --config " + (d / "r.yaml") + (c.extra.empty() ? "" : " " + c.extra));
    EXPECT_EQ(r.exit_code, 1) << c.lines << r.output;
    EXPECT_HAS(r.output, "moereg: error: " + (d / "r.yaml") + ":" + c.expected);
    EXPECT_HAS(r.output, c.also);
    EXPECT_LACKS(r.output, "internal error");
    EXPECT_FALSE(fs::exists(out)) << c.lines;
  }

  // The position is the key's, wherever it is: here the map is indented by two columns.
  moereg::test::write_bytes(d / "r.yaml", "  # converted by rank 0\n  source: " + src + "\n  output: " + out +
                                              "\n  experts: \"0:64\"\n  to: grouped\n");
  auto r = moereg::test::run_moereg("convert --config " + (d / "r.yaml"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, (d / "r.yaml") + ":4:3: experts '0:64': ");

  // A recipe's source and output: a checkpoint that does not open, an output that is not empty.
  moereg::test::write_bytes(d / "r.yaml", "source: " + (d / "missing") + "\noutput: " + out + "\nto: grouped\n");
  r = moereg::test::run_moereg("convert --config " + (d / "r.yaml"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, (d / "r.yaml") + ":1:1: source '" + (d / "missing") + "': ");
  EXPECT_FALSE(fs::exists(out));
  fs::create_directories(d / "full");
  moereg::test::write_bytes(d / "full/keep.txt", "mine");
  moereg::test::write_bytes(d / "r.yaml", "source: " + src + "\noutput: " + (d / "full") + "\nto: grouped\n");
  r = moereg::test::run_moereg("convert --config " + (d / "r.yaml"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, (d / "r.yaml") + ":2:1: output '" + (d / "full") + "': ");
  EXPECT_HAS(r.output, "not empty");
  EXPECT_EQ(std::distance(fs::directory_iterator(d / "full"), fs::directory_iterator()), 1);
}

// The same values on the command line stay usage errors naming the option, and a bad
// command-line value beside a recipe is not blamed on the recipe.
TEST(ConvertRecipe, CommandLineValuesAreNotBlamedOnTheRecipe) {
  moereg::test::temp_dir d;
  const std::string src = moereg::test::fixture("qwen3_moe/hf");
  const std::string out = d / "out";
  moereg::test::write_bytes(d / "r.yaml", "source: " + src + "\noutput: " + out + "\nto: grouped\n");
  auto r = moereg::test::run_moereg("convert --config " + (d / "r.yaml") + " --dtype fp16");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_HAS(r.output, "moereg: --dtype 'fp16': expected bf16");
  r = moereg::test::run_moereg("convert --config " + (d / "r.yaml") + " --experts 0:64");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "moereg: error: --experts 0:64 is not a non-empty range within 0:8");
  EXPECT_LACKS(r.output, "r.yaml:");
  r = moereg::test::run_moereg("convert --config " + (d / "r.yaml") + " --to transformer_v5");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "moereg: error: family 'qwen3_moe' has no layout 'transformer_v5'");
  EXPECT_HAS(r.output, (d / "r.yaml") + ":3:1: to 'grouped' is overridden by the command line: --to 'transformer_v5'");
  EXPECT_FALSE(fs::exists(out));
}

// Found by a tester: `source:` and `output:` were dropped without a word when CKPT and OUT
// were given too. The command line wins (as it does for every key), and a warning names both.
TEST(ConvertRecipe, CommandLineWinsWithAWarning) {
  moereg::test::temp_dir d;
  const std::string src = moereg::test::fixture("qwen3_moe/hf");
  moereg::test::write_bytes(d / "r.yaml", "source: " + (d / "elsewhere") + "\noutput: " + (d / "recipe-out") +
                                              "\nto: transformers_v5\nshard_size: 5GB\n");
  auto r = moereg::test::run_moereg("convert --config " + (d / "r.yaml") + " " + src + " " + (d / "cli-out") +
                                    " --to grouped --shard-size 5GB");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_HAS(r.output, (d / "r.yaml") + ":1:1: source '" + (d / "elsewhere") + "' is overridden by the command line: CKPT '" +
                           src + "'");
  EXPECT_HAS(r.output, (d / "r.yaml") + ":2:1: output '" + (d / "recipe-out") +
                           "' is overridden by the command line: OUT '" + (d / "cli-out") + "'");
  EXPECT_HAS(r.output, (d / "r.yaml") + ":3:1: to 'transformers_v5' is overridden by the command line: --to 'grouped'");
  EXPECT_LACKS(r.output, "shard_size '5GB' is overridden");  // the same value: nothing to say
  EXPECT_TRUE(fs::exists(d / "cli-out/model.safetensors"));
  EXPECT_FALSE(fs::exists(d / "recipe-out"));
  auto v = moereg::test::run_moereg("inspect " + (d / "cli-out"));
  EXPECT_HAS(v.output, "grouped");

  // Only what the command line leaves unset comes from the recipe, without a warning.
  moereg::test::write_bytes(d / "r2.yaml", "source: " + src + "\noutput: " + (d / "out2") + "\nto: grouped\n");
  r = moereg::test::run_moereg("convert --config " + (d / "r2.yaml"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_LACKS(r.output, "overridden");
  EXPECT_TRUE(fs::exists(d / "out2/model.safetensors"));
}

}  // namespace
}  // namespace test_convert_recipe
