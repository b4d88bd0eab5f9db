// SPDX-License-Identifier: Apache-2.0
// mpirun -np N moereg convert (docs/mpi.md): the output of 2 and 3 processes is the
// single-process output byte for byte, on the fixtures and on a synthetic checkpoint of many
// shards; a rank failing mid-job stops every rank and leaves a state that --resume with
// another N completes identically; --ep under MPI; an --ep rank reads its share of the expert
// bytes. Skipped only in a build without MPI or where mpirun is missing.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <vector>

#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build compiles this file with others.
namespace test_mpi_convert {
namespace {

#ifdef MOEREG_MPIEXEC
const std::string mpiexec = MOEREG_MPIEXEC;
#else
const std::string mpiexec;
#endif

#define SKIP_WITHOUT_MPI()                                                                                         \
  do {                                                                                                             \
    if (mpiexec.empty()) GTEST_SKIP() << "moereg was built without MPI (MOEREG_MPI=OFF or libopenmpi-dev missing)"; \
    if (!fs::exists(mpiexec)) GTEST_SKIP() << mpiexec << " is missing (apt-get install openmpi-bin)";               \
  } while (0)

// mpirun as root where CI runs as root, with more processes than cores. Under
// AddressSanitizer the ranks run without leak detection: Open MPI 4.1 leaves its own
// allocations (ompi_op_base_op_select, opal_argv, components it has already dlclosed, so no
// suppression can name them) at MPI_Finalize; every other check of ASan and UBSan stays on.
//
// Each test process gives its mpirun runs a session directory of their own: Open MPI 4.1
// creates /tmp/ompi.HOST.UID racily, and two tests launching at once (ctest -j2) failed one
// of them with "mkdir /tmp/ompi.vm.0: File exists" (1 of 120 MPI test runs under load).
struct session_base {
  std::string dir = (fs::temp_directory_path() / ("moereg-ompi-" + std::to_string(::getpid()))).string();
  session_base() { fs::create_directories(dir); }
  ~session_base() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

std::string launcher(const std::string& env = "") {
  static const session_base base;
  return "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_orte_tmpdir_base=" + base.dir +
         " ASAN_OPTIONS=\"${ASAN_OPTIONS}:detect_leaks=0\" " + env + " " + mpiexec + " --oversubscribe -x ASAN_OPTIONS ";
}

// `mpirun -np n BIN`.
std::string mpirun(int n, const std::string& env = "", const std::string& bin = "moereg") {
  return launcher(env) + "-np " + std::to_string(n) + " " + (env.empty() ? "" : "-x MOEREG_TEST_FAIL_AT ") + MOEREG_BUILD_DIR "/bin/" +
         bin + " ";
}

std::vector<std::string> hidden_files(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string()[0] == '.') found.push_back(e.path().filename().string());
  return found;
}

// The conversion (`inputs`: "convert SRC", or "lora merge BASE ADAPTER") by one process, then
// by each count of ranks: identical files, no leftovers.
void expect_same_as_one_process(const std::string& src, const std::string& args, const std::string& command = "convert") {
  test::temp_dir d;
  const std::string inputs = command + " " + src + " ";
  auto one = test::run_moereg(inputs + (d / "one") + " " + args);
  ASSERT_EQ(one.exit_code, 0) << one.output;
  for (int n : {2, 3}) {
    const std::string out = d / ("np" + std::to_string(n));
    auto r = test::run_command(mpirun(n) + inputs + out + " " + args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(test::differing_files(d / "one", out), std::vector<std::string>{}) << src << " with " << n << " ranks";
    EXPECT_EQ(hidden_files(out), std::vector<std::string>{}) << "resume logs and the lock are gone when complete";
    EXPECT_NO_THROW(checkpoint::open(out));
  }
}

// Writes a qwen3_moe checkpoint in the transformers_v5 layout whose experts are large enough
// (1 MiB per expert's gate_up) that readahead at the edges of a rank's range is small beside it.
std::uint64_t write_large_expert_checkpoint(const std::string& dir) {
  constexpr std::int64_t E = 4, H = 512, I = 512, layers = 2;
  fs::create_directories(dir);
  std::vector<tensor_spec> specs;
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".mlp.";
    specs.push_back({p + "experts.gate_up_proj", dtype::BF16, {E, 2 * I, H}});
    specs.push_back({p + "experts.down_proj", dtype::BF16, {E, H, I}});
    specs.push_back({p + "gate.weight", dtype::BF16, {E, H}});
  }
  sort_like_safetensors(specs);
  std::uint64_t expert_bytes = 0;
  {
    safetensors_writer w(dir + "/model.safetensors", specs);
    for (std::size_t i = 0; i < w.tensors().size(); ++i) {
      std::vector<std::byte> b(w.tensors()[i].nbytes());
      for (std::size_t k = 0; k < b.size(); ++k) b[k] = static_cast<std::byte>((k * 131 + i * 7) & 0x7F);
      w.write(i, 0, b.data(), b.size());
      if (w.tensors()[i].name.find("experts") != std::string::npos) expert_bytes += b.size();
    }
    w.commit();
  }
  test::write_bytes(dir + "/config.json", R"({"model_type":"qwen3_moe","hidden_size":512,"moe_intermediate_size":512,
    "num_experts":4,"num_experts_per_tok":1,"num_hidden_layers":2,"decoder_sparse_step":1,"mlp_only_layers":[]})");
  return expert_bytes;
}

// Out of the page cache, so that reading it again counts in /proc/PID/io read_bytes.
void evict(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << path;
  ::fdatasync(fd);
  ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  ::close(fd);
}

}  // namespace

TEST(MpiConvert, FixturesMatchTheSingleProcessConversion) {
  SKIP_WITHOUT_MPI();
  expect_same_as_one_process(test::fixture("qwen3_moe/hf"), "--to transformers_v5 --shard-size 60KB");
  expect_same_as_one_process(test::fixture("deepseek_v3/hf"), "--to transformers_v5 --shard-size 100KB");
  expect_same_as_one_process(test::fixture("mixtral/hf"), "--to hf_split --shard-size 50KB");
  // One file: rank 0 writes it (and renames it into place last); the others plan and wait.
  expect_same_as_one_process(test::fixture("qwen3_moe/hf"), "--to transformers_v5");
}

// lora merge is the conversion job with the adapter attached: shared the same way, and each
// rank merges its shards as one process would.
TEST(MpiConvert, LoraMergeMatchesTheSingleProcessMerge) {
  SKIP_WITHOUT_MPI();
  for (const char* f : {"qwen3_moe", "mixtral", "deepseek_v3"}) {
    const std::string base = test::fixture(std::string(f) + "/hf"), adapter = test::fixture(std::string("lora/") + f + "/peft_per_expert");
    expect_same_as_one_process(base + " " + adapter, "--shard-size 60KB", "lora merge");
  }
  // The merge is in the output: it differs from the base converted alone.
  test::temp_dir d;
  const std::string base = test::fixture("qwen3_moe/hf");
  ASSERT_EQ(test::run_command(mpirun(2) + "lora merge " + base + " " + test::fixture("lora/qwen3_moe/peft_per_expert") + " " +
                              (d / "merged"))
                .exit_code,
            0);
  ASSERT_EQ(test::run_moereg("convert " + base + " " + (d / "plain") + " --to hf").exit_code, 0);
  EXPECT_FALSE(test::differing_files(d / "merged", d / "plain").empty());
}

// Every other command runs as one process: under mpirun each copy refuses before doing anything.
TEST(MpiConvert, OtherCommandsRefuseToRunAsManyCopies) {
  SKIP_WITHOUT_MPI();
  auto r = test::run_command(mpirun(2) + "lora inspect " + test::fixture("lora/qwen3_moe/peft_per_expert"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("`moereg lora inspect` runs as one process; only `moereg convert` and `moereg lora merge` share"),
            std::string::npos)
      << r.output;
}

TEST(MpiConvert, ASyntheticCheckpointOfManyShardsMatches) {
  SKIP_WITHOUT_MPI();
  test::temp_dir d;
  auto s = test::run_moereg("synth " + (d / "src") + " --layers 6 --shard-size 100KB");
  ASSERT_EQ(s.exit_code, 0) << s.output;
  expect_same_as_one_process(d / "src", "--to transformers_v5 --shard-size 120KB");
}

TEST(MpiConvert, ARankFailingMidJobStopsEveryRankAndResumesWithAnotherCount) {
  SKIP_WITHOUT_MPI();
  test::temp_dir d;
  const std::string src = test::fixture("deepseek_v3/hf"), args = " --to transformers_v5 --shard-size 60KB";
  auto one = test::run_moereg("convert " + src + " " + (d / "one") + args);
  ASSERT_EQ(one.exit_code, 0) << one.output;
  for (int resume_with : {2, 1}) {
    const std::string out = d / ("out" + std::to_string(resume_with));
    // Rank 1 of 3 fails after its first shard, as a write error would.
    auto bad = test::run_command(mpirun(3, "MOEREG_TEST_FAIL_AT=shard-done:1@1", "moereg_stoppable") + "convert " + src + " " + out + args);
    EXPECT_NE(bad.exit_code, 0) << bad.output;
    EXPECT_HAS(bad.output, "rank 1 of 3: injected failure at shard-done");
    EXPECT_HAS(bad.output, "another rank failed");  // what the other ranks say
    ASSERT_TRUE(fs::exists(out + "/.moereg-resume.json")) << bad.output;
    EXPECT_FALSE(fs::exists(out + "/model.safetensors.index.json")) << "a failed job must not look complete";
    EXPECT_FALSE(fs::exists(out + "/config.json"));
    auto again = resume_with > 1 ? test::run_command(mpirun(resume_with) + "convert " + src + " " + out + args + " --resume")
                                 : test::run_moereg("convert " + src + " " + out + args + " --resume");
    ASSERT_EQ(again.exit_code, 0) << again.output;
    EXPECT_EQ(test::differing_files(d / "one", out), std::vector<std::string>{}) << "resumed with " << resume_with;
    EXPECT_EQ(hidden_files(out), std::vector<std::string>{});
  }
}

TEST(MpiConvert, ExpertParallelSlicesMatchTheSingleProcessOnes) {
  SKIP_WITHOUT_MPI();
  test::temp_dir d;
  const std::string src = test::fixture("qwen3_moe/hf"), args = " --to transformers_v5 --shard-size 60KB --ep 4";
  auto one = test::run_moereg("convert " + src + " " + (d / "one") + args);
  ASSERT_EQ(one.exit_code, 0) << one.output;
  for (int n : {2, 4}) {  // ranks write slices r, r + n, ...
    const std::string out = d / ("np" + std::to_string(n));
    auto r = test::run_command(mpirun(n) + "convert " + src + " " + out + args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    for (int s = 0; s < 4; ++s) {
      const std::string part = "/ep-" + std::to_string(s) + "-of-4";
      EXPECT_EQ(test::differing_files(d / "one" + part, out + part), std::vector<std::string>{}) << part << " with " << n << " ranks";
    }
  }
}

// Every rank plans, finds E = 8 does not split into 3 and stops before writing: no OUT at all.
TEST(MpiConvert, AnUnevenExpertParallelSplitLeavesNothing) {
  SKIP_WITHOUT_MPI();
  test::temp_dir d;
  auto r = test::run_command(mpirun(2) + "convert " + test::fixture("qwen3_moe/hf") + " " + (d / "ep") + " --to hf --ep 3");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_HAS(r.output, "--ep 3: the model has E=8 experts per layer");
  EXPECT_FALSE(fs::exists(d / "ep")) << r.output;
}

// Ranks given different jobs (an MPMD launch, `A : B`): --ep beside no --ep waited for ever in
// a collective step one side never reached; --ep 2 beside --ep 4 wrote a mixed set of slices
// with exit 0. Each is refused on every rank before anything is written.
TEST(MpiConvert, RanksGivenDifferentJobsAreRefusedBeforeWriting) {
  SKIP_WITHOUT_MPI();
  test::temp_dir d;
  const std::string bin = std::string(MOEREG_BUILD_DIR) + "/bin/moereg", src = test::fixture("qwen3_moe/hf");
  for (const auto& [a, b] : {std::pair<std::string, std::string>{"--ep 2", ""}, {"--ep 2", "--ep 4"}, {"", "--shard-size 100KB"}}) {
    SCOPED_TRACE(a + " / " + b);
    const std::string out = d / "out", job = " convert " + src + " " + out + " --to hf ";
    auto r = test::run_command("timeout 120 " + launcher() + "-np 1 " + bin + job + a + " : -np 1 " + bin + job + b);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_HAS(r.output, "rank 1 was given another job than rank 0");
    EXPECT_FALSE(fs::exists(out)) << r.output;
  }
}

// Rank 0 reports the whole job of --ep slices, not only its own: the last progress line
// counts every slice's tensors (4 slices of the same size, 2 per rank).
TEST(MpiConvert, ExpertParallelProgressIsTheWholeJobs) {
  SKIP_WITHOUT_MPI();
  test::temp_dir d;
  auto one = test::run_moereg("convert " + test::fixture("qwen3_moe/hf") + " " + (d / "one") + " --to hf --ep 4 --json");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto r = test::run_command(mpirun(2) + "convert " + test::fixture("qwen3_moe/hf") + " " + (d / "ep") + " --to hf --ep 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex(R"(all ranks: 100% written \((\d+) of (\d+) tensors\))"))) << r.output;
  EXPECT_EQ(m[1], m[2]);
  std::smatch t;
  ASSERT_TRUE(std::regex_search(one.output, t, std::regex(R"("tensors": (\d+))"))) << one.output;
  EXPECT_EQ(std::stoull(m[1]), std::stoull(t[1])) << "the whole job's tensors, every slice's";
}

TEST(MpiConvert, AnExpertParallelRankReadsItsShareOfTheExpertBytes) {
  SKIP_WITHOUT_MPI();
  test::temp_dir d;
  const std::uint64_t expert_bytes = write_large_expert_checkpoint(d / "src");
  ASSERT_NO_FATAL_FAILURE(evict(d / "src/model.safetensors"));
  // Each rank's shell reports what it and the moereg it ran read from the disk (a reaped
  // child's I/O is added to its parent's /proc/PID/io).
  const std::string rank_io = "sh -c '\"$0\" \"$@\"; s=$?; grep read_bytes /proc/$$/io > " + (d / "io-") +
                              "$OMPI_COMM_WORLD_RANK; exit $s' " MOEREG_BUILD_DIR "/bin/moereg ";
  // Through the mapping, where moereg asks the kernel for exactly the ranges it copies. With
  // copy_file_range the kernel's own sequential readahead (read_ahead_kb, 8 MB on the CI disk)
  // runs past a rank's range, which on this 12 MB file is most of the other rank's bytes
  // (docs/mpi.md).
  const std::string cmd = launcher() + "-np 2 " + rank_io + "convert " + (d / "src") + " " + (d / "ep") + " --to hf --ep 2 --no-copy-file-range";
  auto r = test::run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (int rank = 0; rank < 2; ++rank) {
    std::ifstream in(d / ("io-" + std::to_string(rank)));
    std::string key;
    std::uint64_t read = 0;
    ASSERT_TRUE(in >> key >> read) << "no /proc/PID/io record for rank " << rank;
    const double share = static_cast<double>(read) / static_cast<double>(expert_bytes);
    std::cout << "rank " << rank << " of --ep 2 read " << read << " bytes, " << share << " of the " << expert_bytes
              << " expert bytes\n";
    if (read == 0) GTEST_SKIP() << "this filesystem does not account reads in /proc/PID/io (tmpfs?)";
    EXPECT_GT(share, 0.35) << "rank " << rank;
    EXPECT_LT(share, 0.65) << "rank " << rank << " read more than its half of the experts";
  }
}

}  // namespace test_mpi_convert
