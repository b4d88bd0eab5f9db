// SPDX-License-Identifier: Apache-2.0
// What a user sees from the CLI, checked by its text: untrusted names escaped (text, JSON,
// errors and the log), out-of-range values refused with a message, top-level help, one
// formatting of sizes/durations/rates, inspect --json's model and GGUF fields.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <regex>
#include <sstream>

#include "moereg/base/json.h"
#include "test_support.h"

using namespace moereg;
using test::run_moereg;
namespace fs = std::filesystem;


// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_cli_hygiene {
namespace {

// A tensor name that sets the terminal's title and turns its text red (ESC ] 0 ; ... BEL,
// ESC [ 31 m), plus a C1 CSI (U+009B) that some terminals act on too.
const std::string evil = "model.w\x1b]0;pwned\x07.\x1b[31mred\xc2\x9b" "2J";
const std::string evil_escaped = "model.w\\x1b]0;pwned\\x07.\\x1b[31mred\\u009b2J";

// One F32 [2] tensor per name, as a .safetensors image; `dtype` lets a test make it invalid.
std::string tensors_file(const std::vector<std::string>& names, const std::string& dtype = "F32") {
  std::string header = "{", data;
  std::uint64_t off = 0;
  for (const auto& n : names) {
    if (header.size() > 1) header += ",";
    json::append_quoted(header, n);
    header += ":{\"dtype\":\"" + dtype + "\",\"shape\":[2],\"data_offsets\":[" + std::to_string(off) + "," +
              std::to_string(off + 8) + "]}";
    off += 8;
    data += std::string(8, '\0');
  }
  return test::safetensors_image(header + "}", data);
}

void expect_no_terminal_controls(const std::string& output) {
  EXPECT_EQ(output.find('\x1b'), std::string::npos) << "raw ESC reached the terminal: " << output;
  EXPECT_EQ(output.find('\x07'), std::string::npos) << output;
  EXPECT_EQ(output.find("\xc2\x9b"), std::string::npos) << output;
}

std::string sh_quote(const std::string& s) { return "'" + s + "'"; }  // names here hold no '

}  // namespace

TEST(CliHygiene, InspectEscapesTensorNamesInTextAndJson) {
  test::temp_dir d;
  test::write_bytes(d / "evil.safetensors", tensors_file({evil, "ok.weight"}));
  auto r = run_moereg("inspect " + (d / "evil.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_no_terminal_controls(r.output);
  EXPECT_HAS(r.output, evil_escaped);

  r = run_moereg("inspect --json " + (d / "evil.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_no_terminal_controls(r.output);
  json::value v = json::parse(r.output, "inspect --json");
  bool found = false;
  for (const auto& g : v.find("groups")->as_array()) found |= g.find("pattern")->as_string() == evil;
  EXPECT_TRUE(found) << "the JSON string decodes to the exact name: " << r.output;
}

TEST(CliHygiene, ErrorsQuotingNamesAreEscaped) {
  test::temp_dir d;
  // A header the reader refuses, naming the tensor (unknown dtype).
  test::write_bytes(d / "bad.safetensors", tensors_file({evil}, "F33"));
  test::write_bytes(d / "ok.safetensors", tensors_file({"ok.weight"}));
  auto r = run_moereg("verify " + (d / "bad.safetensors") + " " + (d / "ok.safetensors"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  expect_no_terminal_controls(r.output);
  EXPECT_HAS(r.output, "tensor '" + evil_escaped + "': unknown dtype 'F33'");

  // verify's list of differences.
  test::write_bytes(d / "evil.safetensors", tensors_file({evil, "ok.weight"}));
  r = run_moereg("verify " + (d / "evil.safetensors") + " " + (d / "ok.safetensors"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  expect_no_terminal_controls(r.output);
  EXPECT_HAS(r.output, "missing_in_b  " + evil_escaped);

  // convert of a qwen3_moe checkpoint that also holds the crafted tensor: the planner's
  // problem list names it.
  fs::create_directories(d / "ckpt");
  fs::copy_file(test::fixture("qwen3_moe/hf/config.json"), d / "ckpt/config.json");
  std::string image = test::read_bytes(test::fixture("qwen3_moe/hf/model.safetensors"));
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(image[static_cast<std::size_t>(i)]);
  json::value header = json::parse(image.substr(8, n), "fixture header");
  std::string data = image.substr(8 + n);
  header.set(evil, json::value(json::object{{"dtype", json::value("F32")},
                                            {"shape", json::value(json::array{json::value(2)})},
                                            {"data_offsets", json::value(json::array{json::value(static_cast<std::uint64_t>(data.size())),
                                                                                     json::value(static_cast<std::uint64_t>(data.size() + 8))})}}));
  test::write_bytes(d / "ckpt/model.safetensors", test::safetensors_image(json::dump(header), data + std::string(8, '\0')));
  r = run_moereg("convert " + (d / "ckpt") + " " + (d / "out") + " --to transformers_v5");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  expect_no_terminal_controls(r.output);
  EXPECT_HAS(r.output, evil_escaped + ": not claimed by any rule");
  EXPECT_FALSE(fs::exists(d / "out/config.json"));
}

TEST(CliHygiene, LogLinesAreEscaped) {
  // The info line of convert quotes the source path; here it holds an ESC sequence.
  test::temp_dir d;
  std::string src = d / "src\x1b[31mred";
  fs::copy(test::fixture("qwen3_moe/hf"), src, fs::copy_options::recursive);
  auto r = run_moereg("convert " + sh_quote(src) + " " + (d / "out") + " --to transformers_v5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_no_terminal_controls(r.output);
  EXPECT_HAS(r.output, "[info] " + (d / "src\\x1b[31mred") + ": family qwen3_moe");
}

TEST(CliHygiene, ThreadsOutOfRangeAreRefusedByName) {
  test::temp_dir d;
  std::string src = test::fixture("qwen3_moe/hf");
  auto r = run_moereg("convert " + src + " " + (d / "out") + " --to transformers_v5 --threads=-4");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_HAS(r.output, "--threads '-4': expected an integer from 0 to 4096");
  EXPECT_FALSE(fs::exists(d / "out"));
  r = run_moereg("convert " + src + " " + (d / "out") + " --to transformers_v5 --threads 99999999999");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_HAS(r.output, "--threads '99999999999': expected an integer from 0 to 4096");

  for (std::string value : {"many", "99999999999", "-4", "2.5"}) {
    test::write_bytes(d / "recipe.yaml", "source: " + src + "\noutput: " + (d / "out") + "\nto: transformers_v5\nthreads: " +
                                             value + "\n");
    r = run_moereg("convert --config " + (d / "recipe.yaml"));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_HAS(r.output, d / "recipe.yaml:4:1: threads '" + value + "': expected an integer from 0 to 4096");
    EXPECT_LACKS(r.output, "internal error");
    EXPECT_FALSE(fs::exists(d / "out"));
  }
  for (const char* cmd : {"synth OUT --threads=-1", "moe run CKPT --layer 0 --input I --output O --threads=-2",
                          "moe bench --threads=-3"}) {
    r = run_moereg(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd << ": " << r.output;
    EXPECT_HAS(r.output, "--threads '-");
  }
}

TEST(CliHygiene, ShardSizesAreCheckedAndSharedBySynthAndConvert) {
  test::temp_dir d;
  std::string src = test::fixture("qwen3_moe/hf");
  for (std::string value : {"nan", "infGB", "-5GB", "5 parsecs"}) {
    test::write_bytes(d / "recipe.yaml", "source: " + src + "\noutput: " + (d / "out") + "\nto: transformers_v5\n"
                                         "shard_size: " + value + "\n");
    auto r = run_moereg("convert --config " + (d / "recipe.yaml"));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_HAS(r.output, d / "recipe.yaml:4:1: shard_size '" + value + "': expected a size like 5GB");
    EXPECT_FALSE(fs::exists(d / "out"));
    r = run_moereg("convert " + src + " " + (d / "out") + " --to transformers_v5 --shard-size '" + value + "'");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_HAS(r.output, "--shard-size '" + value + "': expected a size like 5GB");
  }
  // synth takes the same sizes as convert.
  auto r = run_moereg("synth " + (d / "one") + " --shard-size 1GB");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(d / "one/model.safetensors"));
  r = run_moereg("synth " + (d / "sharded") + " --shard-size 64KiB");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(d / "sharded/model.safetensors.index.json"));
  r = run_moereg("synth " + (d / "bad") + " --shard-size infGB");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_HAS(r.output, "--shard-size 'infGB': expected a size like 5GB");
}

TEST(CliHygiene, ExpertRangesAreUsageErrors) {
  test::temp_dir d;
  std::string src = test::fixture("qwen3_moe/hf");
  for (std::string value : {"5:2", "3:3", "-1:2", "a:b", "1:2x", "4"}) {
    auto r = run_moereg("convert " + src + " " + (d / "out") + " --to transformers_v5 --experts=" + value);
    EXPECT_EQ(r.exit_code, 2) << value << ": " << r.output;
    EXPECT_HAS(r.output, "--experts '" + value + "': expected A:B with integers 0 <= A < B");
    EXPECT_FALSE(fs::exists(d / "out"));
  }
}

TEST(CliHygiene, OtherNumericOptionsAreChecked) {
  test::temp_dir d;
  struct bad_case {
    std::string args, message;
  };
  for (const auto& c : std::vector<bad_case>{
           {"synth " + (d / "s") + " --layers 0", "--layers '0': expected an integer from 1 to 65536"},
           {"synth " + (d / "s") + " --seed=-1", "--seed '-1': expected an integer from 0 to"},
           {"verify a b --max-report=-1", "--max-report '-1': expected an integer from 0 to"},
           {"moe run " + test::fixture("qwen3_moe/hf") + " --layer=-1 --input i --output o", "--layer '-1': expected an integer"},
           {"moe bench --preset tiny --tokens 1 --no-reference --min-seconds nan", "--min-seconds 'nan': expected a number from 0 to 3600"},
           {"moe bench --preset tiny --tokens 1 --no-reference --reference-max-seconds=-1",
            "--reference-max-seconds '-1': expected a number"},
           {"moe bench --preset tiny --tokens 1,99999999 --no-reference",
            "--tokens: expected comma-separated integers from 1 to 1048576, found '99999999'"}}) {
    auto r = run_moereg(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << ": " << r.output;
    EXPECT_HAS(r.output, c.message);
  }
  EXPECT_FALSE(fs::exists(d / "s"));
}

TEST(CliHygiene, RecipeThatIsADirectory) {
  test::temp_dir d;
  fs::create_directories(d / "recipe.yaml");
  auto r = run_moereg("convert --config " + (d / "recipe.yaml"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, d / "recipe.yaml: is a directory, expected a recipe file (YAML)");
  EXPECT_LACKS(r.output, "internal error");
}

TEST(CliHygiene, CorruptResumeChecksumIsNamed) {
  test::temp_dir d;
  std::string out = d / "out";
  std::string args = "convert " + test::fixture("deepseek_v3/hf") + " " + out + " --to transformers_v5 --shard-size 60KB";
  ASSERT_NO_FATAL_FAILURE(test::interrupted_convert(test::fixture("deepseek_v3/hf"), out, "transformers_v5", 60'000, 2));
  std::string log = test::read_bytes(out + "/.moereg-resume.json");
  std::regex checksum("\"checksum\": \"[0-9a-f]{16}\"");
  ASSERT_TRUE(std::regex_search(log, checksum)) << log;
  test::write_bytes(out + "/.moereg-resume.json", std::regex_replace(log, checksum, "\"checksum\": \"zz-not-hex\"",
                                                                      std::regex_constants::format_first_only));
  auto r = run_moereg(args + " --resume");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, ".moereg-resume.json: shard '");
  EXPECT_HAS(r.output, "checksum 'zz-not-hex' is not 16 hex digits");
  EXPECT_LACKS(r.output, "internal error");
}

TEST(CliHygiene, TopLevelHelp) {
  for (const char* flag : {"-h", "--help", "help"}) {
    auto r = run_moereg(flag);
    EXPECT_EQ(r.exit_code, 0) << flag << ": " << r.output;
    EXPECT_HAS(r.output, "usage: moereg");
    EXPECT_HAS(r.output, "convert");
    EXPECT_HAS(r.output, "--version");
    EXPECT_HAS(r.output, "moereg help COMMAND");
  }
  auto r = run_moereg("help convert");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_HAS(r.output, "usage: moereg convert CKPT OUT --to LAYOUT");
  r = run_moereg("help moe run");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_HAS(r.output, "usage: moereg moe run CKPT");
  r = run_moereg("help no-such-command");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_HAS(r.output, "unknown command 'no-such-command'");
  r = run_moereg("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(std::regex_search(r.output, std::regex("^moereg [0-9]+\\.[0-9]+\\.[0-9]+ \\(plugin API [0-9]+\\)\n$"))) << r.output;
}

TEST(CliHygiene, HelpTextsNameTheInstalledDocs) {
  auto r = run_moereg("convert --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_HAS(r.output, "docs/gguf.md in the source, ");
  EXPECT_TRUE(std::regex_search(r.output, std::regex("/share/doc/moereg/gguf\\.md when installed"))) << r.output;
  r = run_moereg("--help");
  EXPECT_TRUE(std::regex_search(r.output, std::regex("/share/doc/moereg/ when installed"))) << r.output;
}

TEST(CliHygiene, DurationsRatesAndSizesPrintWithThreeDigits) {
  const std::string duration = "[0-9]{1,3}(\\.[0-9]{1,2})? (ns|us|ms|s)|[0-9]+ min [0-9]{2} s";
  const std::string rate = "[0-9]{1,3}(\\.[0-9]{1,2})? (B|kB|MB|GB|TB)/s";
  test::temp_dir d;
  auto r = run_moereg("convert " + test::fixture("qwen3_moe/hf") + " " + (d / "out") + " --to transformers_v5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("file\\(s\\); (" + duration + "), " + rate + "\n"))) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("planned in (" + duration + ")\\)\n"))) << r.output;

  r = run_moereg("demo");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream lines(r.output);
  int timed = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.find("done in") == std::string::npos) continue;
    ++timed;
    EXPECT_TRUE(std::regex_match(line, std::regex("    done in (" + duration + ")"))) << line;
  }
  EXPECT_GE(timed, 5) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("load (" + duration + "), create (" + duration + "), forward (" +
                                                     duration + ") -> ")))
      << r.output;

  // Sizes are decimal everywhere, as the rates and --shard-size 5GB are.
  r = run_moereg("inspect " + test::fixture("qwen3_moe/hf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_HAS(r.output, "bytes       232192 (232 kB)");
  EXPECT_LACKS(r.output, "iB");
}

TEST(CliHygiene, InspectJsonHasTheModelAndGgufMetadata) {
  auto text = run_moereg("inspect " + test::fixture("qwen3_moe/hf"));
  auto r = run_moereg("inspect --json " + test::fixture("qwen3_moe/hf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  json::value v = json::parse(r.output, "inspect --json");
  const json::value* dims = v.find("dims");
  ASSERT_TRUE(dims && dims->is_object()) << r.output;
  std::string described = "E=" + std::to_string(dims->find("E")->as_int()) + " H=" + std::to_string(dims->find("H")->as_int()) +
                          " I=" + std::to_string(dims->find("I")->as_int()) + " K=" + std::to_string(dims->find("K")->as_int()) +
                          ", " + std::to_string(dims->find("moe_layers")->as_array().size()) + " MoE layers";
  EXPECT_HAS(text.output, described);
  EXPECT_GT(dims->find("moe_layers")->as_array().size(), 0u);

  std::string gguf = test::fixture("gguf_llamacpp/qwen3_moe.gguf");
  r = run_moereg("inspect --json " + gguf);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  v = json::parse(r.output, "inspect --json (gguf)");
  const json::value* md = v.find("gguf_metadata");
  ASSERT_TRUE(md && md->is_object()) << r.output;
  EXPECT_EQ(md->find("general.architecture")->as_string(), "qwen3moe");
  ASSERT_TRUE(md->find("qwen3moe.expert_count"));
  EXPECT_GT(md->find("qwen3moe.expert_count")->as_int(), 0);
  text = run_moereg("inspect " + gguf);
  EXPECT_HAS(text.output, "general.architecture = 'qwen3moe'");
  EXPECT_HAS(text.output, "GGUF keys");
}

}  // namespace test_cli_hygiene

// `--log-level` before a command with subcommands reached the subcommand's slot: `moereg
// --log-level warn moe run ...` said "moe: unknown subcommand '--log-level'".
TEST(CliHygiene, GlobalLogLevelReachesCommandsWithSubcommands) {
  auto r = run_moereg("--log-level warn lora inspect /nonexistent/adapter");
  EXPECT_EQ(r.output.find("unknown subcommand"), std::string::npos) << r.output;
  EXPECT_TRUE(test::contains(r.output, "/nonexistent/adapter")) << r.output;
  r = run_moereg("--log-level=warn moe run " + test::fixture("qwen3_moe/hf") + " --layer 1 --input /nonexistent/in.safetensors --output /tmp/o.safetensors");
  EXPECT_EQ(r.output.find("unknown subcommand"), std::string::npos) << r.output;
  EXPECT_TRUE(test::contains(r.output, "/nonexistent/in.safetensors")) << r.output;
  r = run_moereg("--log-level warn plugins list");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// What a command prints reached stdout, or the run fails: a --json summary written to a full
// disk exited 0 with nothing written, and a closed pipe killed the job by SIGPIPE (exit 141,
// mid-write when the log went to the pipe, leaving unfinished files behind).
TEST(CliHygiene, AnUnwritableStdoutIsAFailureNotSilenceOrSigpipe) {
  // (in sh -c: run_command sends stderr where stdout goes, after the command line)
  auto r = test::run_command("sh -c '" + std::string(MOEREG_BUILD_DIR) + "/bin/moereg --json inspect " + test::fixture("qwen3_moe/hf") +
                             " >/dev/full'");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, "moereg: error: cannot write to standard output: No space left on device")) << r.output;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);  // no reader: every write to the pipe fails with EPIPE (or raises SIGPIPE)
  test::temp_dir d;
  r = test::run_command("sh -c '" + std::string(MOEREG_BUILD_DIR) + "/bin/moereg convert " + test::fixture("qwen3_moe/hf") +
                        " --to grouped " + (d / "out") + " 1>&" + std::to_string(fds[1]) + "'");
  ::close(fds[1]);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, "cannot write to standard output: Broken pipe (the job itself completed)")) << r.output;
  EXPECT_TRUE(std::filesystem::exists(d / "out/config.json")) << r.output;
}
