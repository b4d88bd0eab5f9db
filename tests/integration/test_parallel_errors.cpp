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

namespace {

// The lines of a command's output that say what went wrong.
std::string error_lines(const std::string& output) {
  std::string out;
  std::size_t at = 0;
  while (at < output.size()) {
    std::size_t end = output.find('\n', at);
    if (end == std::string::npos) end = output.size();
    std::string line = output.substr(at, end - at);
    if (line.find("error") != std::string::npos) out += line + "\n";
    at = end + 1;
  }
  return out;
}

}  // namespace

TEST(ParallelErrors, TheSameBadInputGivesTheSameMessageWithAnyThreadCount) {
  // Every attn_k tensor of this mixtral fails the permute_qk hook (3 heads do not split 32
  // rows); the message must name the first in plan order, blk.0's, on every run.
  test::temp_dir d;
  fs::create_directories(d / "m");
  std::string cfg = test::read_bytes(test::fixture("mixtral/hf/config.json"));
  auto at = cfg.find("\"num_key_value_heads\": 2");
  ASSERT_NE(at, std::string::npos);
  cfg.replace(at, std::strlen("\"num_key_value_heads\": 2"), "\"num_key_value_heads\": 3");
  test::write_bytes(d / "m/config.json", cfg);
  fs::copy_file(test::fixture("mixtral/hf/model.safetensors"), d / "m/model.safetensors");
  std::set<std::string> messages;
  int runs = 0;
  for (int threads : {1, 2, 3, 4, 8, 16})
    for (int round = 0; round < 3; ++round) {
      std::string out = d / ("g" + std::to_string(runs++));
      auto r = test::run_moereg("convert " + (d / "m") + " " + out + " --to gguf --threads " + std::to_string(threads));
      EXPECT_EQ(r.exit_code, 1) << r.output;
      std::string e = error_lines(r.output);
      EXPECT_NE(e.find("on tensor 'blk.0.attn_k.weight'"), std::string::npos) << threads << " threads: " << r.output;
      messages.insert(e);
      EXPECT_FALSE(fs::exists(out + "/model.gguf"));
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
    EXPECT_NE(r.output.find(std::string("--threads ") + n + ": expected 1..4096"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "o/model.safetensors"));
  }
}
