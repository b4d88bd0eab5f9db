// SPDX-License-Identifier: Apache-2.0
// Output jobs under concurrency, interruption and changing inputs: two processes into one
// OUT, signals, a kill just before the output completes, --resume after the source changed,
// a source truncated mid-conversion. Each runs the real moereg binary; the moments that
// matter are reached with MOEREG_TEST_STOP_AT (base/test_stop.h), which freezes the job in
// bin/moereg_stoppable, the command line with a test hook.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/checkpoint/checkpoint_writer.h"
#include "moereg/checkpoint/output_lock.h"
#include "test_support.h"

extern char** environ;

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_output_job_safety {
namespace {

// The command line with the test hook that honours MOEREG_TEST_STOP_AT (tests/CMakeLists.txt).
const std::string bin = std::string(MOEREG_BUILD_DIR) + "/bin/moereg_stoppable";

// Starts moereg with `args` and extra environment variables; stdout and stderr go to `log`.
pid_t spawn(const std::vector<std::string>& args, const std::vector<std::string>& env, const std::string& log) {
  std::vector<std::string> envs = env;
  for (char** e = environ; *e; ++e) envs.emplace_back(*e);
  std::vector<char*> argv{const_cast<char*>(bin.c_str())}, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : envs) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execve(bin.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

// Exit status, or 128 + signal as a shell reports it.
int wait_exit(pid_t pid) {
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// True once the process stopped itself at its MOEREG_TEST_STOP_AT point; false if it exited.
bool wait_stopped(pid_t pid) {
  int st = 0;
  if (::waitpid(pid, &st, WUNTRACED) != pid) return false;
  return WIFSTOPPED(st);
}

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

std::string joined(const std::set<std::string>& s) {
  std::string r;
  for (const auto& x : s) r += x + " ";
  return r;
}

bool has_hidden(const std::string& dir) {
  for (const auto& n : entries(dir))
    if (n[0] == '.') return true;
  return false;
}

// A synthetic qwen3_moe checkpoint (hf layout, one file, about 520 KB), made once.
const std::string& synth_source() {
  static test::temp_dir* d = new test::temp_dir;
  static std::string src = [] {
    std::string p = *d / "src";
    auto r = test::run_moereg("synth " + p + " --layers 4");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return p;
  }();
  return src;
}

std::string copy_source(const test::temp_dir& d) {
  std::string p = d / "src";
  fs::copy(synth_source(), p, fs::copy_options::recursive);
  return p;
}

void expect_verifies(const std::string& out, const std::string& src) {
  auto v = test::run_moereg("verify " + out + " " + src);
  EXPECT_EQ(v.exit_code, 0) << v.output;
}

}  // namespace

// Two processes into one OUT (absent, or present and empty), many times: exactly one
// succeeds and its output verifies; the other is refused, and removes nothing of the first.
// In half the rounds each is held as soon as it owns OUT: only one may ever get there.
TEST(OutputJobSafety, TwoConvertsIntoOneOutNeverBothSucceed) {
  const std::string src = synth_source();
  const std::vector<std::vector<std::string>> targets = {
      {"--to", "grouped", "--shard-size", "100KB"}, {"--to", "gguf"}, {"--to", "transformers_v5"}};
  for (int round = 0; round < 20; ++round) {
    test::temp_dir d;
    std::string out = d / "out";
    if (round % 2) fs::create_directory(out);
    std::vector<std::string> args = {"convert", src, out};
    for (const auto& a : targets[static_cast<std::size_t>(round) % targets.size()]) args.push_back(a);
    const bool held = round % 4 >= 2;
    std::vector<std::string> env;
    if (held) env.push_back("MOEREG_TEST_STOP_AT=output-locked");
    pid_t a = spawn(args, env, d / "a.log");
    pid_t b = spawn(args, env, d / "b.log");
    if (held) {
      // The owner stops there; the other must be refused meanwhile, naming the owner.
      int sa = 0, sb = 0;
      ASSERT_EQ(::waitpid(a, &sa, WUNTRACED), a);
      ASSERT_EQ(::waitpid(b, &sb, WUNTRACED), b);
      if (WIFSTOPPED(sa) == WIFSTOPPED(sb)) {
        for (pid_t p : {a, b}) {
          ::kill(p, SIGKILL);
          ::kill(p, SIGCONT);
          ::waitpid(p, nullptr, 0);
        }
        FAIL() << "round " << round << ": both or neither got to own " << out << "\nA: " << test::read_bytes(d / "a.log")
               << "\nB: " << test::read_bytes(d / "b.log");
      }
      pid_t owner = WIFSTOPPED(sa) ? a : b;
      int refused = WIFSTOPPED(sa) ? sb : sa;
      EXPECT_TRUE(WIFEXITED(refused) && WEXITSTATUS(refused) == 1);
      std::string log = test::read_bytes(owner == a ? d / "b.log" : d / "a.log");
      EXPECT_NE(log.find(out + " is being written by another moereg process (pid " + std::to_string(owner) + ")"),
                std::string::npos)
          << log;
      ::kill(owner, SIGCONT);
      EXPECT_EQ(wait_exit(owner), 0) << test::read_bytes(owner == a ? d / "a.log" : d / "b.log");
      EXPECT_FALSE(has_hidden(out)) << joined(entries(out));
      expect_verifies(out, src);
      continue;
    }
    int ra = wait_exit(a), rb = wait_exit(b);
    std::string la = test::read_bytes(d / "a.log"), lb = test::read_bytes(d / "b.log");
    SCOPED_TRACE("round " + std::to_string(round) + "\nA: " + la + "\nB: " + lb);
    ASSERT_TRUE((ra == 0 && rb == 1) || (ra == 1 && rb == 0)) << "exit statuses " << ra << " and " << rb;
    const std::string& loser = ra == 1 ? la : lb;
    EXPECT_TRUE(loser.find("is being written by another moereg process (pid ") != std::string::npos ||
                loser.find("exists and is not empty") != std::string::npos)
        << loser;
    EXPECT_FALSE(has_hidden(out)) << joined(entries(out));
    expect_verifies(out, src);
  }
}

TEST(OutputJobSafety, LockNamesTheOwnerAndRemovesNothingWhenRefused) {
  test::temp_dir d;
  std::string out = d / "out";
  {
    output_lock mine(out);
    EXPECT_TRUE(mine.created_dir());
    // synth is a writer too: refused, and it leaves the directory and the lock file alone.
    auto r = test::run_moereg("synth " + out);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(out + " is being written by another moereg process (pid " + std::to_string(::getpid()) + ")"),
              std::string::npos)
        << r.output;
    auto c = test::run_moereg("convert " + synth_source() + " " + out + " --to grouped --resume");
    EXPECT_EQ(c.exit_code, 1) << c.output;
    EXPECT_NE(c.output.find("is being written by another moereg process"), std::string::npos) << c.output;
    EXPECT_EQ(entries(out), std::set<std::string>{output_lock::file_name});
    EXPECT_THROW(output_lock{out}, moereg::error);  // a second open file in this process too
  }
  EXPECT_FALSE(fs::exists(out)) << "the lock made the directory, and removes it when left empty";

  // A lock file left by a killed process blocks nobody.
  fs::create_directory(out);
  test::write_bytes(out + "/" + output_lock::file_name, "999999\n");
  auto r = test::run_moereg("convert " + synth_source() + " " + out + " --to grouped");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(has_hidden(out)) << joined(entries(out));
}

// --resume after the source changed (contents, time, header, change time, inode) is refused naming the file.
TEST(OutputJobSafety, ResumeRefusesAChangedSource) {
  test::temp_dir d;
  std::string src = copy_source(d), out = d / "out";
  std::string model = src + "/model.safetensors";
  std::string args = "convert " + src + " " + out + " --to grouped --shard-size 100KB";
  ASSERT_NO_FATAL_FAILURE(test::interrupted_convert(src, out, "grouped", 100'000, 2));

  struct stat before {};
  ASSERT_EQ(::stat(model.c_str(), &before), 0);
  const std::string original = test::read_bytes(model);
  auto restore_time = [&](const std::string& p, const struct stat& st) {
    struct timespec t[2] = {st.st_atim, st.st_mtim};
    ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), t, 0), 0);
  };

  // Same size, same time, another header (the safetensors __metadata__ value).
  std::string edited = original;
  auto at = edited.find("\"format\":\"pt\"");
  ASSERT_NE(at, std::string::npos);
  edited[at + 11] = 'x';
  test::write_bytes(model, edited);
  restore_time(model, before);
  auto r = test::run_moereg(args + " --resume");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("model.safetensors: the source changed since the interrupted conversion (its header changed)"),
            std::string::npos)
      << r.output;

  // Same bytes, newer time: the data may have changed.
  test::write_bytes(model, original);
  r = test::run_moereg(args + " --resume");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("model.safetensors: the source changed"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(it was modified)"), std::string::npos) << r.output;
  restore_time(model, before);

  // Same size, time and header, other tensor data (`cp -p` or `rsync -t` of an edited file
  // leaves exactly this): only the change time tells, which no one can set back. This resumed
  // into a mix of old and new shards with exit status 0.
  std::string data_edited = original;
  data_edited[data_edited.size() - 1] ^= 0x01;
  test::write_bytes(model, data_edited);
  restore_time(model, before);
  r = test::run_moereg(args + " --resume");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("model.safetensors: the source changed since the interrupted conversion (it was written to"),
            std::string::npos)
      << r.output;

  // A file of the same name put in its place (same bytes, times set back).
  test::write_bytes(model + ".new", original);
  ASSERT_EQ(::rename((model + ".new").c_str(), model.c_str()), 0);
  restore_time(model, before);
  r = test::run_moereg(args + " --resume");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("(it was replaced by another file of the same name)"), std::string::npos) << r.output;

  // config.json is a source too.
  std::string cfg = src + "/config.json";
  struct stat cfg_st {};
  ASSERT_EQ(::stat(cfg.c_str(), &cfg_st), 0);
  test::write_bytes(cfg, test::read_bytes(cfg) + " ");
  r = test::run_moereg(args + " --resume");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("config.json: the source changed"), std::string::npos) << r.output;
  test::write_bytes(cfg, test::read_bytes(cfg).substr(0, static_cast<std::size_t>(cfg_st.st_size)));
  restore_time(cfg, cfg_st);

  // Untouched since it was interrupted: resumes.
  const std::string out2 = d / "out2";
  ASSERT_NO_FATAL_FAILURE(test::interrupted_convert(src, out2, "grouped", 100'000, 2));
  r = test::run_moereg("convert " + src + " " + out2 + " --to grouped --shard-size 100KB --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming: 2 of 7"), std::string::npos) << r.output;
  expect_verifies(out2, src);
}

// SIGINT, SIGTERM and SIGHUP stop a conversion (before its first shard, or after some)
// with a non-zero status, saying what was kept; --resume then finishes it.
TEST(OutputJobSafety, SignalsStopCleanlyAndTheJobResumes) {
  struct interruption {
    int signo;
    const char* at;
    std::vector<std::string> to;
  };
  const std::vector<interruption> cases = {
      {SIGTERM, "job-start", {"--to", "grouped", "--shard-size", "100KB"}},
      {SIGINT, "job-start", {"--to", "gguf"}},
      {SIGHUP, "job-start", {"--to", "transformers_v5"}},
      {SIGINT, "shard-done:2", {"--to", "grouped", "--shard-size", "100KB"}},
  };
  const std::string src = synth_source();
  for (const auto& c : cases) {
    test::temp_dir d;
    std::string out = d / "out";
    std::vector<std::string> args = {"convert", src, out};
    args.insert(args.end(), c.to.begin(), c.to.end());
    SCOPED_TRACE(std::string(strsignal(c.signo)) + " at " + c.at + " " + c.to[1]);
    pid_t p = spawn(args, {std::string("MOEREG_TEST_STOP_AT=") + c.at}, d / "log");
    ASSERT_TRUE(wait_stopped(p)) << test::read_bytes(d / "log");
    ::kill(p, c.signo);
    ::kill(p, SIGCONT);
    EXPECT_EQ(wait_exit(p), 128 + c.signo);
    std::string log = test::read_bytes(d / "log");
    EXPECT_NE(log.find("interrupted by SIG"), std::string::npos) << log;
    EXPECT_NE(log.find("kept"), std::string::npos) << log;
    EXPECT_NE(log.find("--resume"), std::string::npos) << log;
    auto left = entries(out);
    EXPECT_TRUE(left.count(".moereg-resume.json")) << joined(left);
    for (const auto& n : left) {
      EXPECT_EQ(n.find(".partial"), std::string::npos) << joined(left);
      EXPECT_NE(n, "config.json") << "an interrupted output must not look complete";
      EXPECT_NE(n, "model.safetensors.index.json");
      EXPECT_NE(n, output_lock::file_name);
    }
    EXPECT_THROW(checkpoint::open(out), moereg::error);

    std::vector<std::string> cmd = {"convert", src, out, "--resume"};
    cmd.insert(cmd.end(), c.to.begin(), c.to.end());
    std::string line;
    for (const auto& a : cmd) line += a + " ";
    auto r = test::run_moereg(line);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    if (std::string(c.at) == "shard-done:2") {
      EXPECT_EQ(r.output.find("resuming: 0 of"), std::string::npos) << "two shards were complete: " << r.output;
    }
    EXPECT_FALSE(has_hidden(out)) << joined(entries(out));
    expect_verifies(out, src);
  }
}

// Killed just before the output completes: config.json is there, the file that makes the
// output complete (index, model.safetensors, model.gguf) is not; --resume completes it.
TEST(OutputJobSafety, TheFileThatCompletesAnOutputIsWrittenLast) {
  const std::string src = synth_source();
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--to", "gguf"}, "model.gguf"},
      {{"--to", "transformers_v5"}, "model.safetensors"},
      {{"--to", "grouped", "--shard-size", "100KB"}, "model.safetensors.index.json"},
  };
  for (const auto& [to, completing] : cases) {
    test::temp_dir d;
    std::string out = d / "out";
    std::vector<std::string> args = {"convert", src, out};
    args.insert(args.end(), to.begin(), to.end());
    SCOPED_TRACE(completing);
    pid_t p = spawn(args, {"MOEREG_TEST_STOP_AT=before-complete"}, d / "log");
    ASSERT_TRUE(wait_stopped(p)) << test::read_bytes(d / "log");
    auto left = entries(out);
    EXPECT_TRUE(left.count("config.json")) << joined(left);
    EXPECT_FALSE(left.count(completing)) << joined(left);
    ::kill(p, SIGKILL);
    EXPECT_EQ(wait_exit(p), 128 + SIGKILL);
    EXPECT_THROW(checkpoint::open(out), moereg::error);
    auto i = test::run_moereg("inspect " + out);
    EXPECT_NE(i.exit_code, 0) << i.output;

    std::string line;
    for (const auto& a : args) line += a + " ";
    auto r = test::run_moereg(line + "--resume");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_FALSE(has_hidden(out)) << joined(entries(out));
    expect_verifies(out, src);
  }
}

// A source truncated while it is converted: a clear error naming it, exit 1, and nothing
// left behind (staged copies used to die of SIGBUS, direct copies with "Bad address").
TEST(OutputJobSafety, ASourceTruncatedDuringTheConversionIsAnErrorNamingIt) {
  const std::vector<std::vector<std::string>> targets = {{"--to", "grouped"},
                                                         {"--to", "grouped", "--shard-size", "100KB"},
                                                         {"--to", "transformers_v5"},
                                                         {"--to", "gguf"}};
  for (const auto& to : targets) {
    for (bool existing_out : {false, true}) {
      test::temp_dir d;
      std::string src = copy_source(d), out = d / "out";
      if (existing_out) fs::create_directory(out);
      std::string model = fs::canonical(src + "/model.safetensors").string();
      std::vector<std::string> args = {"convert", src, out};
      args.insert(args.end(), to.begin(), to.end());
      SCOPED_TRACE(to[1] + (to.size() > 2 ? " sharded" : "") + (existing_out ? ", OUT existed" : ""));
      pid_t p = spawn(args, {"MOEREG_TEST_STOP_AT=job-start"}, d / "log");
      ASSERT_TRUE(wait_stopped(p)) << test::read_bytes(d / "log");
      ASSERT_EQ(::truncate(model.c_str(), static_cast<off_t>(fs::file_size(model) / 3)), 0);
      ::kill(p, SIGCONT);
      EXPECT_EQ(wait_exit(p), 1);
      std::string log = test::read_bytes(d / "log");
      EXPECT_NE(log.find(model + ": the file shrank while it was being read"), std::string::npos) << log;
      if (existing_out) {
        EXPECT_TRUE(entries(out).empty()) << joined(entries(out));
      } else {
        EXPECT_FALSE(fs::exists(out)) << joined(entries(out));
      }
    }
  }
}

// The same guarantees at the writer's level, in-process.
TEST(OutputJobSafety, WriterRenamesAOneFileOutputOnlyInFinish) {
  test::temp_dir d;
  std::string out = d / "out";
  checkpoint_writer w(out, plan_shards({{"a", dtype::U8, {8}}}, {}));
  std::string bytes(8, 'x');
  w.open_shard(0, {}).write(0, 0, bytes.data(), 8);
  w.commit_shard();
  EXPECT_FALSE(fs::exists(out + "/model.safetensors")) << "complete-looking before config.json";
  w.write_file("config.json", "{}\n");
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
  w.finish(false);
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  EXPECT_EQ(entries(out), (std::set<std::string>{"config.json", "model.safetensors"}));
}

TEST(OutputJobSafety, AFailedWriterRemovesOnlyWhatItCreated) {
  test::temp_dir d;
  std::string out = d / "out";
  {
    checkpoint_writer w(out, plan_shards({{"a", dtype::U8, {8}}, {"b", dtype::U8, {8}}}, {.shard_size = 8}));
    std::string bytes(8, 'x');
    w.open_shard(0, {}).write(0, 0, bytes.data(), 8);
    w.commit_shard();
    w.open_shard(1, {});
    test::write_bytes(out + "/not-mine.txt", "someone else's");
  }
  EXPECT_EQ(entries(out), std::set<std::string>{"not-mine.txt"});
}

// The shipped binary has no stop hook: MOEREG_TEST_STOP_AT changes nothing there.
TEST(OutputJobSafety, TheShippedBinaryIgnoresTheTestStopVariable) {
  test::temp_dir d;
  auto r = test::run_moereg("convert " + test::fixture("qwen3_moe/hf") + " " + (d / "out") + " --to transformers_v5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string cmd = "MOEREG_TEST_STOP_AT=output-locked timeout -s KILL 120 '" + std::string(MOEREG_BUILD_DIR) +
                          "/bin/moereg' convert '" + test::fixture("qwen3_moe/hf") + "' '" + (d / "out2") +
                          "' --to transformers_v5 >/dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the shipped moereg stopped or failed at a test stop point";
  EXPECT_TRUE(fs::exists(d / "out2/config.json"));
}

}  // namespace test_output_job_safety

// OUT a symlink to nothing: the lock looped on mkdir's EEXIST and said the directory "keeps
// being created and removed by another process".
TEST(OutputJobSafety, ADanglingSymlinkAsOutputIsNamedAsOne) {
  test::temp_dir d;
  std::filesystem::create_directory_symlink(d / "nowhere", d / "out");
  auto r = test::run_moereg("convert " + test::fixture("qwen3_moe/hf") + " " + (d / "out") + " --to grouped");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, "out: is a symbolic link to " + (d / "nowhere") + ", which does not exist")) << r.output;
  EXPECT_FALSE(std::filesystem::exists(d / "nowhere"));
}
