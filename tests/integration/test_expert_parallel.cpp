// SPDX-License-Identifier: Apache-2.0
// convert --ep N (one process): N expert-parallel checkpoints in one run, each the
// `--experts A:B` conversion of its range with per-expert keys numbered from 0 and a config
// that says so; and the refusal to run as several uncoordinated copies under a launcher.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build compiles this file with others.
namespace test_expert_parallel {
namespace {

const std::string qwen = test::fixture("qwen3_moe/hf");  // E = 8

std::string slice(const std::string& out, int r, int n) {
  return out + "/ep-" + std::to_string(r) + "-of-" + std::to_string(n);
}

// Every slice of `--ep n` equals the --experts conversion of its range, file for file, but
// for config.json, which gives the local count and the global ids.
void expect_slices_match_expert_ranges(int n) {
  test::temp_dir d;
  const std::string args = " --to transformers_v5 --shard-size 60KB";
  auto ep = test::run_moereg("convert " + qwen + " " + (d / "ep") + args + " --ep " + std::to_string(n));
  ASSERT_EQ(ep.exit_code, 0) << ep.output;
  const int per = 8 / n;
  for (int r = 0; r < n; ++r) {
    const std::string range = std::to_string(r * per) + ":" + std::to_string((r + 1) * per);
    const std::string ref = d / ("experts-" + std::to_string(r));
    auto ex = test::run_moereg("convert " + qwen + " " + ref + args + " --experts " + range);
    ASSERT_EQ(ex.exit_code, 0) << ex.output;
    const std::string got = slice(d / "ep", r, n);
    EXPECT_TRUE(fs::exists(got + "/model.safetensors.index.json")) << "a sharded slice: " << got;
    EXPECT_EQ(test::differing_files(got, ref, {"config.json"}), std::vector<std::string>{}) << got << " against --experts " << range;
    json::value cfg = json::parse_file(got + "/config.json");
    ASSERT_TRUE(cfg.find("num_local_experts"));
    EXPECT_EQ(cfg.find("num_local_experts")->as_int(), per);
    const json::value* ids = cfg.find_path("moereg.expert_parallel.experts");
    ASSERT_TRUE(ids && ids->is_array()) << got;
    ASSERT_EQ(ids->as_array().size(), static_cast<std::size_t>(per));
    EXPECT_EQ(ids->as_array().front().as_int(), r * per);
    EXPECT_EQ(cfg.find_path("moereg.expert_parallel.rank")->as_int(), r);
    EXPECT_EQ(cfg.find_path("moereg.expert_parallel.ranks")->as_int(), n);
    EXPECT_EQ(cfg.find_path("moereg.expert_parallel.num_experts")->as_int(), 8);
  }
  EXPECT_FALSE(fs::exists(slice(d / "ep", n, n)));
}

}  // namespace

TEST(ExpertParallel, TwoSlicesEqualTheirExpertRanges) { expect_slices_match_expert_ranges(2); }

TEST(ExpertParallel, FourSlicesEqualTheirExpertRanges) { expect_slices_match_expert_ranges(4); }

TEST(ExpertParallel, PerExpertKeysCountFromZeroAndEachSliceConvertsOnItsOwn) {
  test::temp_dir d;
  auto ep = test::run_moereg("convert " + qwen + " " + (d / "ep") + " --to hf --ep 2");
  ASSERT_EQ(ep.exit_code, 0) << ep.output;
  checkpoint one = checkpoint::open(slice(d / "ep", 1, 2));
  EXPECT_NE(one.find("model.layers.0.mlp.experts.0.gate_proj.weight"), nullptr) << "global expert 4 is local expert 0";
  EXPECT_NE(one.find("model.layers.1.mlp.experts.3.down_proj.weight"), nullptr);
  EXPECT_EQ(one.find("model.layers.0.mlp.experts.4.gate_proj.weight"), nullptr);
  EXPECT_NE(one.find("model.embed_tokens.weight"), nullptr) << "every non-expert tensor is in every slice";
  // The slice is a checkpoint of 4 experts by itself: moereg reads it (config and tensors
  // agree) and its stacked form equals the --experts 4:8 conversion of the source.
  auto back = test::run_moereg("convert " + slice(d / "ep", 1, 2) + " " + (d / "back") + " --to transformers_v5");
  ASSERT_EQ(back.exit_code, 0) << back.output;
  auto ref = test::run_moereg("convert " + qwen + " " + (d / "ref") + " --to transformers_v5 --experts 4:8");
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  EXPECT_EQ(test::differing_files(d / "back", d / "ref", {"config.json"}), std::vector<std::string>{});
}

// --experts A:B used to keep the source's config.json (E = 8 beside [3, ...] tensors) and the
// global numbers of per-expert keys, so its output did not read back (exit 0 all the same).
TEST(ExpertParallel, AnExpertRangeIsACheckpointOfItsExpertsByItself) {
  test::temp_dir d;
  for (const char* to : {"transformers_v5", "hf"}) {
    SCOPED_TRACE(to);
    const std::string out = d / (std::string("r_") + to);
    auto r = test::run_moereg("convert " + qwen + " " + out + " --to " + to + " --experts 2:5");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    json::value cfg = json::parse_file(out + "/config.json");
    ASSERT_TRUE(cfg.find("num_local_experts") && cfg.find_path("moereg.expert_slice.experts")) << test::read_bytes(out + "/config.json");
    EXPECT_EQ(cfg.find("num_local_experts")->as_int(), 3);
    EXPECT_EQ(cfg.find_path("moereg.expert_slice.first_expert")->as_int(), 2);
    EXPECT_EQ(cfg.find_path("moereg.expert_slice.num_experts")->as_int(), 8);
    ASSERT_EQ(cfg.find_path("moereg.expert_slice.experts")->as_array().size(), 3u);
    EXPECT_EQ(cfg.find_path("moereg.expert_slice.experts")->as_array().back().as_int(), 4);
    EXPECT_EQ(cfg.find_path("moereg.expert_parallel"), nullptr);
    r = test::run_moereg("inspect " + out);
    EXPECT_TRUE(test::contains(r.output, "E=3 H=64")) << r.output;
    EXPECT_FALSE(test::contains(r.output, "problems")) << r.output;
    // It converts on its own, and is not sliced again.
    r = test::run_moereg("convert " + out + " " + out + "_v5 --to transformers_v5");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    r = test::run_moereg("convert " + out + " " + out + "_again --to transformers_v5 --experts 0:2");
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_TRUE(test::contains(r.output, "the source is itself a slice")) << r.output;
    EXPECT_FALSE(fs::exists(out + "_again"));
  }
  checkpoint per_expert = checkpoint::open(d / "r_hf");
  EXPECT_NE(per_expert.find("model.layers.1.mlp.experts.0.up_proj.weight"), nullptr) << "numbered from 0";
  EXPECT_EQ(per_expert.find("model.layers.1.mlp.experts.3.up_proj.weight"), nullptr);
  auto r = test::run_moereg("verify " + (d / "r_hf_v5") + " " + (d / "r_transformers_v5"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(ExpertParallel, AnUnevenSplitIsRefusedAndWritesNothing) {
  test::temp_dir d;
  auto r = test::run_moereg("convert " + qwen + " " + (d / "ep") + " --to transformers_v5 --ep 3");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_HAS(r.output, "--ep 3: the model has E=8 experts per layer");
  EXPECT_FALSE(fs::exists(d / "ep")) << "nothing written, not even OUT";
}

// --ep 8 of 8 experts with 2 per token: a slice of one expert says top-k 1, so that it opens
// by itself (moereg checks K <= E as transformers' routers do), and keeps the global 2.
TEST(ExpertParallel, ASliceOfFewerExpertsThanTopKSaysItsOwnCount) {
  test::temp_dir d;
  auto r = test::run_moereg("convert " + qwen + " " + (d / "ep") + " --to transformers_v5 --ep 8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(slice(d / "ep", 5, 8) + "/config.json");
  const std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_HAS(cfg, "\"num_experts_per_tok\": 1");
  EXPECT_HAS(cfg, "\"top_k\": 2");
  EXPECT_HAS(cfg, "\"experts\": [\n        5\n      ]");
  auto again = test::run_moereg("convert " + slice(d / "ep", 5, 8) + " " + (d / "back") + " --to hf");
  EXPECT_EQ(again.exit_code, 0) << again.output;
}

TEST(ExpertParallel, BadValuesAreUsageErrors) {
  test::temp_dir d;
  for (const char* bad : {"0", "-2", "two"}) {
    auto r = test::run_moereg("convert " + qwen + " " + (d / "ep") + " --to transformers_v5 --ep=" + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.output;
    EXPECT_HAS(r.output, "--ep");
  }
  auto both = test::run_moereg("convert " + qwen + " " + (d / "ep") + " --to transformers_v5 --ep 2 --experts 0:4");
  EXPECT_EQ(both.exit_code, 2) << both.output;
  auto gguf = test::run_moereg("convert " + qwen + " " + (d / "ep") + " --to gguf --ep 2");
  EXPECT_EQ(gguf.exit_code, 2) << gguf.output;
  EXPECT_HAS(gguf.output, "--ep: layout 'gguf'");
  EXPECT_FALSE(fs::exists(d / "ep"));
}

TEST(ExpertParallel, ResumeFinishesTheSlicesLeft) {
  test::temp_dir d;
  const std::string base = "convert " + qwen + " " + (d / "ep") + " --to transformers_v5 --shard-size 60KB --ep 2";
  auto full = test::run_moereg(base);
  ASSERT_EQ(full.exit_code, 0) << full.output;
  // As if the run had stopped after slice 0: slice 1 gone.
  fs::remove_all(slice(d / "ep", 1, 2));
  auto again = test::run_moereg(base);
  EXPECT_EQ(again.exit_code, 1) << "OUT is not empty: " << again.output;
  auto resumed = test::run_moereg(base + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  auto ref = test::run_moereg("convert " + qwen + " " + (d / "ref") + " --to transformers_v5 --shard-size 60KB --experts 4:8");
  ASSERT_EQ(ref.exit_code, 0) << ref.output;
  EXPECT_EQ(test::differing_files(slice(d / "ep", 1, 2), d / "ref", {"config.json"}), std::vector<std::string>{});
}

TEST(LaunchCheck, SeveralCopiesUnderALauncherAreRefused) {
  test::temp_dir d;
  // What mpirun -np 4 (or srun with PMI) gives each copy, without MPI to coordinate them:
  // a build without MPI refuses every command; a build with it, every command but convert.
  const std::string env = "env OMPI_COMM_WORLD_SIZE=4 ";
  auto r = test::run_command(env + MOEREG_BUILD_DIR "/bin/moereg inspect " + qwen);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_HAS(r.output, "started as one of 4 processes (OMPI_COMM_WORLD_SIZE=4)");
#ifndef MOEREG_HAVE_MPI
  auto c = test::run_command(env + MOEREG_BUILD_DIR "/bin/moereg convert " + qwen + " " + (d / "out") + " --to hf");
  EXPECT_EQ(c.exit_code, 2) << c.output;
  EXPECT_HAS(c.output, "built without MPI");
  EXPECT_FALSE(fs::exists(d / "out"));
#endif
  auto pmi = test::run_command("env PMI_SIZE=3 " MOEREG_BUILD_DIR "/bin/moereg inspect " + qwen);
  EXPECT_EQ(pmi.exit_code, 2) << pmi.output;
  EXPECT_HAS(pmi.output, "(PMI_SIZE=3)");
  // srun's step count (any --mpi): the same refusal.
  auto srun = test::run_command("env SLURM_STEP_NUM_TASKS=2 " MOEREG_BUILD_DIR "/bin/moereg inspect " + qwen);
  EXPECT_EQ(srun.exit_code, 2) << srun.output;
  EXPECT_HAS(srun.output, "(SLURM_STEP_NUM_TASKS=2)");
#ifdef MOEREG_HAVE_MPI
  // A convert started as one of 2 tasks by srun without --mpi=pmix (no PMI for MPI to join
  // them through) refuses instead of racing its twin; nothing is written.
  auto lone = test::run_command("env SLURM_STEP_NUM_TASKS=2 " MOEREG_BUILD_DIR "/bin/moereg convert " + qwen + " " +
                                (d / "lone") + " --to hf");
  EXPECT_EQ(lone.exit_code, 2) << lone.output;
  EXPECT_HAS(lone.output, "started as one of 2 processes (SLURM_STEP_NUM_TASKS=2) by srun with no PMI");
  EXPECT_HAS(lone.output, "run srun --mpi=pmix");
  EXPECT_FALSE(fs::exists(d / "lone"));
#endif
  // One process (mpirun -np 1) is an ordinary run.
  auto one = test::run_command("env OMPI_COMM_WORLD_SIZE=1 " MOEREG_BUILD_DIR "/bin/moereg inspect " + qwen);
  EXPECT_EQ(one.exit_code, 0) << one.output;
}

}  // namespace test_expert_parallel

// A complete slice keeps no resume log, and --resume kept it without a check: a resume from
// another source, layout or N completed an OUT of mixed slices with exit 0. OUT's record of
// the job (.moereg-ep.json) is checked before any slice is kept.
TEST(ExpertParallel, AResumeWithAnotherSourceLayoutOrNIsRefused) {
  test::temp_dir d;
  const std::string qwen = test::fixture("qwen3_moe/hf"), out = d / "ep";
  auto r = test::run_moereg("convert " + qwen + " " + out + " --to transformers_v5 --ep 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(std::filesystem::exists(out + "/.moereg-ep.json"));
  // As an interrupted job leaves it: slice 0 complete, slice 1 not started.
  std::filesystem::remove_all(out + "/ep-1-of-2");
  std::filesystem::copy(qwen, d / "other", std::filesystem::copy_options::recursive);
  struct refusal {
    std::string args, says;
  };
  for (const refusal& x : std::vector<refusal>{
           {(d / "other") + " " + out + " --to transformers_v5 --ep 2", "source was " + std::filesystem::weakly_canonical(qwen).string()},
           {qwen + " " + out + " --to grouped --ep 2", "--to was transformers_v5, now grouped"},
           {qwen + " " + out + " --to transformers_v5 --ep 4", "--ep was 2, now 4"}}) {
    r = test::run_moereg("convert " + x.args + " --resume");
    EXPECT_EQ(r.exit_code, 1) << x.args << "\n" << r.output;
    EXPECT_TRUE(test::contains(r.output, "the interrupted --ep job had other options (")) << r.output;
    EXPECT_TRUE(test::contains(r.output, x.says)) << r.output;
  }
  EXPECT_FALSE(std::filesystem::exists(out + "/ep-0-of-4"));
  EXPECT_FALSE(std::filesystem::exists(out + "/ep-1-of-2"));
  // Without --ep, the resume says what OUT holds.
  r = test::run_moereg("convert " + qwen + " " + out + " --to transformers_v5 --resume");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(test::contains(r.output, "holds the slices of a --ep job (.moereg-ep.json records it): resume it with the same --ep N"))
      << r.output;
  // The same job resumes, and equals an uninterrupted one.
  r = test::run_moereg("convert " + qwen + " " + out + " --to transformers_v5 --ep 2 --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_moereg("convert " + qwen + " " + (d / "whole") + " --to transformers_v5 --ep 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (int k = 0; k < 2; ++k) {
    const std::string s = "/ep-" + std::to_string(k) + "-of-2";
    auto v = test::run_moereg("verify " + out + s + " " + (d / "whole") + s);
    EXPECT_EQ(v.exit_code, 0) << v.output;
  }
}
