// SPDX-License-Identifier: Apache-2.0
// Errors found by the conversion workers are reported the same on every run, whatever the
// thread count and timing, and a thread that cannot be started is a clean error.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_parallel_errors {
namespace {

// The lines of a command's output that say what went wrong.
std::string error_lines(const std::string& output) {
  std::string out;
  std::size_t at = 0;
  while (at < output.size()) {
    std::size_t end = output.find('\n', at);
    if (end == std::string::npos) end = output.size();
    std::string line = output.substr(at, end - at);
    if (line.find("error:") != std::string::npos) out += line + "\n";
    at = end + 1;
  }
  return out;
}

}  // namespace

TEST(ParallelErrors, TheSameBadInputGivesTheSameMessageWithAnyThreadCount) {
  // A family whose target layout runs every k_proj through a hook that always fails (the ABI
  // tests' "throws"): the conversion workers meet one failure per layer, in whatever order
  // the threads reach them. The message must name the first in plan order on every run.
  test::temp_dir d;
  const std::string dir = d / "plugins", plugin = dir + "/abi_good";
  fs::create_directories(plugin);
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(plugin.c_str(), 0755), 0);
  fs::copy_file(std::string(MOEREG_ABI_LIB_DIR) + "/libmoereg_abi_good.so", plugin + "/libmoereg_abi_good.so");
  test::write_bytes(plugin + "/plugin.yaml", R"(name: abi_good
version: '0.0.1'
api_version: 1
extends: qwen3_moe
library: libmoereg_abi_good.so
hooks: [negate, throws]
layouts:
  throwing:
    description: transformers_v5 with every k_proj through a hook that fails
    experts:
      gate_up: {key: "model.layers.{layer}.mlp.experts.gate_up_proj", fuse: [gate, up]}
      down:    {key: "model.layers.{layer}.mlp.experts.down_proj"}
    transforms:
      - {key: "model.layers.{layer}.self_attn.k_proj.weight", hook: throws}
)");
  std::set<std::string> messages;
  int runs = 0;
  for (int threads : {1, 2, 3, 4, 8, 16})
    for (int round = 0; round < 3; ++round) {
      std::string out = d / ("o" + std::to_string(runs++));
      auto r = test::run_moereg("convert " + test::fixture("qwen3_moe/hf") + " " + out + " --family abi_good --to throwing --plugin-path " +
                                dir + " --threads " + std::to_string(threads));
      EXPECT_EQ(r.exit_code, 1) << r.output;
      std::string e = error_lines(r.output);
      EXPECT_NE(e.find("hook 'throws' on tensor 'model.layers.0.self_attn.k_proj.weight': kaboom from inside the hook"),
                std::string::npos)
          << threads << " threads: " << r.output;
      messages.insert(e);
      EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
    }
  EXPECT_EQ(messages.size(), 1u) << "different messages for one input:\n" << [&] {
    std::string all;
    for (const auto& m : messages) all += m;
    return all;
  }();
}

TEST(ParallelErrors, AThreadThatCannotStartIsAnError) {
  // RLIMIT_NPROC counts threads; root ignores it, so the child drops to nobody first.
  test::temp_dir d;
  ASSERT_EQ(::chmod(d.path().c_str(), 0777), 0);
  const std::string out = d / "out", log = d / "log";
  const std::string bin = std::string(MOEREG_BUILD_DIR) + "/bin/moereg";
  const std::string src = test::fixture("mixtral/hf");
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) ::_exit(90);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (::getuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(91);
    // LeakSanitizer's exit check starts a thread of its own, which the limit would stop.
    ::setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    rlimit one{1, 1};
    if (::setrlimit(RLIMIT_NPROC, &one) != 0) ::_exit(92);
    std::vector<const char*> argv = {bin.c_str(), "convert", src.c_str(), out.c_str(), "--to", "transformers_v5",
                                     "--threads", "4", nullptr};
    ::execv(bin.c_str(), const_cast<char* const*>(argv.data()));
    ::_exit(93);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  std::string output = test::read_bytes(log);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status) << ": " << output;
  ASSERT_LT(WEXITSTATUS(status), 90) << "the child could not be set up (" << WEXITSTATUS(status) << ")";
  EXPECT_EQ(WEXITSTATUS(status), 1) << output;
  EXPECT_NE(output.find("moereg: error: cannot start thread 2 of 4"), std::string::npos) << output;
  EXPECT_NE(output.find("--threads"), std::string::npos) << output;
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
  EXPECT_FALSE(fs::exists(out + "/config.json"));
}

TEST(ParallelErrors, ThreadCountsOutOfRangeAreUsageErrors) {
  test::temp_dir d;
  for (const char* n : {"-4", "100000"}) {
    auto r = test::run_moereg("convert " + test::fixture("qwen3_moe/hf") + " " + (d / "o") + " --to transformers_v5 --threads " + n);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find(std::string("--threads '") + n + "': expected an integer from 0 to 4096"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "o/model.safetensors"));
  }
}

}  // namespace test_parallel_errors
