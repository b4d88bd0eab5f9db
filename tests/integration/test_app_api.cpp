// SPDX-License-Identifier: Apache-2.0
// The application API (moereg/app/*.h), called directly as a program linking libmoereg
// would: open, convert (dry run, progress, cancel), verify, the backend choice of run_moe,
// and the problem kinds of bad requests.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "moereg/app/moereg.h"
#include "moereg/base/test_stop.h"
#include "moereg/safetensors/safetensors_reader.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

TEST(AppApi, OpenModelNamesFamilyLayoutAndTensors) {
  auto m = app::open_model({test::fixture("qwen3_moe/hf"), "", "", {}});
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m.value().family, "qwen3_moe");
  EXPECT_EQ(m.value().layout, "hf");
  EXPECT_GT(m.value().experts, 0);
  EXPECT_FALSE(m.value().tensors.empty());
  EXPECT_NE(std::find(m.value().layouts.begin(), m.value().layouts.end(), "transformers_v5"), m.value().layouts.end());
  EXPECT_NE(m.value().config_json.find("qwen3_moe"), std::string::npos);

  auto missing = app::open_model({"/nonexistent/ckpt", "", "", {}});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, app::error_kind::input);
  EXPECT_NE(missing.error().message.find("/nonexistent/ckpt"), std::string::npos) << missing.error().message;
  EXPECT_THROW(missing.value(), std::logic_error);

  auto none = app::open_model({});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().kind, app::error_kind::usage);

  // A layout or family the caller names is checked against the tensors: open_model reported
  // layout transformers_v5 for hf tensors, and mixtral's dims for a qwen3_moe checkpoint.
  auto wrong_layout = app::open_model({test::fixture("mixtral/hf"), "", "transformers_v5", {}});
  ASSERT_FALSE(wrong_layout.ok());
  EXPECT_EQ(wrong_layout.error().kind, app::error_kind::input);
  EXPECT_NE(wrong_layout.error().message.find("transformers_v5"), std::string::npos) << wrong_layout.error().message;
  auto wrong_family = app::open_model({test::fixture("qwen3_moe/hf"), "mixtral", "", {}});
  EXPECT_FALSE(wrong_family.ok());
}

TEST(AppApi, InspectSummarisesWhatTheCommandLinePrints) {
  auto r = app::inspect({test::fixture("qwen3_moe/hf"), {}});
  ASSERT_TRUE(r.ok()) << r.error().message;
  const app::checkpoint_report& c = r.value();
  EXPECT_EQ(c.family, "qwen3_moe");
  EXPECT_EQ(c.layout, "hf");
  EXPECT_TRUE(c.family_error.empty());
  EXPECT_GT(c.experts, 0);
  EXPECT_FALSE(c.moe_layers.empty());
  std::uint64_t tensors = 0, bytes = 0;
  for (const auto& g : c.groups) {
    tensors += g.count;
    bytes += g.bytes;
  }
  EXPECT_EQ(tensors, c.tensor_count);
  EXPECT_EQ(bytes, c.total_bytes);
  EXPECT_LT(c.groups.size(), c.tensor_count) << "experts and layers fold into patterns";
  EXPECT_TRUE(c.gguf_metadata.empty());
  // The report's JSON is what `moereg inspect --json` prints.
  auto cli = test::run_moereg("inspect " + test::fixture("qwen3_moe/hf") + " --json");
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_EQ(cli.output, c.json + "\n");

  // GGUF: the metadata, each key as JSON and as one line of text; long arrays summarised.
  auto g = app::inspect({test::fixture("gguf_llamacpp/qwen3_moe.gguf"), {}});
  ASSERT_TRUE(g.ok()) << g.error().message;
  ASSERT_FALSE(g.value().gguf_metadata.empty());
  EXPECT_EQ(g.value().gguf_metadata[0].key, "general.architecture");
  EXPECT_EQ(g.value().gguf_metadata[0].json, "\"qwen3moe\"");

  // One tensor file with no config: summarised, the family left open with the reason.
  auto bare = app::inspect({test::fixture("qwen3_moe/transformers_v5.safetensors"), {}});
  ASSERT_TRUE(bare.ok()) << bare.error().message;
  EXPECT_TRUE(bare.value().family.empty());
  EXPECT_FALSE(bare.value().family_error.empty());
  EXPECT_GT(bare.value().tensor_count, 0u);

  auto missing = app::inspect({"/nonexistent/ckpt", {}});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, app::error_kind::input);
  EXPECT_EQ(app::inspect({}).error().kind, app::error_kind::usage);
}

TEST(AppApi, ConvertReportsProgressAndVerifiesAgainstTheReference) {
  test::temp_dir d;
  app::convert_request req;
  req.source = test::fixture("qwen3_moe/hf");
  req.output = d / "v5";
  req.to = "transformers_v5";
  std::vector<app::convert_progress> seen;
  req.on_progress = [&](const app::convert_progress& p) { seen.push_back(p); };
  auto r = app::convert(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().from, "hf");
  EXPECT_EQ(r.value().to, "transformers_v5");
  EXPECT_EQ(r.value().resumed_shards, 0u);
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(seen.back().final);
  EXPECT_EQ(seen.back().bytes, r.value().total_bytes);
  EXPECT_EQ(seen.back().tensors, r.value().tensors);
  for (std::size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i].bytes, seen[i - 1].bytes);
  // To a .gguf the output's sizes differ from the source's: the final call still says done.
  seen.clear();
  app::convert_request g = req;
  g.output = d / "g";
  g.to = "gguf";
  auto rg = app::convert(g);
  ASSERT_TRUE(rg.ok()) << rg.error().message;
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(seen.back().final);
  EXPECT_EQ(seen.back().bytes, seen.back().total_bytes);
  EXPECT_EQ(seen.back().tensors, seen.back().total_tensors);
  for (const auto& p : seen) EXPECT_LE(p.bytes, p.total_bytes);

  auto v = app::verify({req.output, test::fixture("qwen3_moe/transformers_v5.safetensors"), {}});
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_TRUE(v.value().equal);
  EXPECT_GT(v.value().compared, 0u);
  // Across layouts the comparison goes through them.
  v = app::verify({req.output, req.source, {}});
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_TRUE(v.value().equal);
  EXPECT_NE(v.value().how.find("through layouts"), std::string::npos) << v.value().how;
  // Different checkpoints are a report, not a problem.
  v = app::verify({req.output, test::fixture("mixtral/hf"), {}});
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_FALSE(v.value().equal);
  EXPECT_FALSE(v.value().differences.empty());
}

// An in-process test stop hook for one test (base/test_stop.h), removed however the test ends.
struct stop_hook_for_test {
  explicit stop_hook_for_test(test_stop_hook hook) { set_test_stop_hook(hook); }
  ~stop_hook_for_test() { set_test_stop_hook(nullptr); }
  stop_hook_for_test(const stop_hook_for_test&) = delete;
  stop_hook_for_test& operator=(const stop_hook_for_test&) = delete;
};

// The running counts are the output's bytes and tensors: they used to add the source bytes
// each item read (under a third of the output's when Q4_0 blocks are decoded to bf16) and leave out the shards
// a resume kept, so a progress line stopped short of its totals and only the final call said
// done. A pause after each shard lets the reporting thread speak while the job runs: during
// the pause after the last shard every byte is written, so a running report shows the totals.
TEST(AppApi, ProgressCountsOutputBytesAndWhatAResumeKept) {
  test::temp_dir d;
  const stop_hook_for_test pause([](const char* point) {
    if (std::string_view(point) == "shard-done") std::this_thread::sleep_for(std::chrono::milliseconds(300));
  });
  auto counts_reach_totals = [](const std::vector<app::convert_progress>& seen, const app::convert_report& r) {
    ASSERT_FALSE(seen.empty());
    EXPECT_TRUE(seen.back().final);
    EXPECT_EQ(seen.back().bytes, r.total_bytes);
    EXPECT_EQ(seen.back().tensors, seen.back().total_tensors);
    bool running_done = false;
    for (const auto& p : seen) {
      EXPECT_LE(p.bytes, p.total_bytes);
      EXPECT_LE(p.tensors, p.total_tensors);
      running_done |= !p.final && p.bytes == p.total_bytes && p.tensors == p.total_tensors;
    }
    EXPECT_TRUE(running_done) << "no running report reached the totals; the last before the final one said "
                              << seen[seen.size() > 1 ? seen.size() - 2 : 0].bytes << " of " << r.total_bytes << " bytes";
  };
  std::vector<app::convert_progress> seen;
  app::convert_request req;
  req.source = test::fixture("gguf_llamacpp/qwen3_moe-q4_0.gguf");  // ggml blocks decoded to bf16
  req.output = d / "bf16";
  req.to = "hf";
  req.to_bf16 = true;
  req.shard_size = 60'000;
  req.on_progress = [&](const app::convert_progress& p) { seen.push_back(p); };
  auto r = app::convert(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  counts_reach_totals(seen, r.value());

  const std::string out = d / "resumed";
  ASSERT_NO_FATAL_FAILURE(test::interrupted_convert(test::fixture("deepseek_v3/hf"), out, "transformers_v5", 60'000, 2));
  seen.clear();
  app::convert_request again;
  again.source = test::fixture("deepseek_v3/hf");
  again.output = out;
  again.to = "transformers_v5";
  again.shard_size = 60'000;
  again.resume = true;
  again.on_progress = [&](const app::convert_progress& p) { seen.push_back(p); };
  r = app::convert(again);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().resumed_shards, 2u);
  counts_reach_totals(seen, r.value());
}

// A source written while the job read it (config.json edited, a shard rewritten in place)
// completed an output that mixed old and new data, exit 0: the config said 16 experts over
// tensors of 8. The job checks its sources' identities before it completes the output.
namespace app_api_source_change {
std::string edit_path;
bool edited = false;
void edit_once(const char* point) {
  if (std::string_view(point) != "shard-done" || edited) return;
  edited = true;
  std::fstream f(edit_path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(-1, std::ios::end);  // the last byte: config.json's closing brace or a weight byte
  char c = 0;
  f.read(&c, 1);
  f.seekp(-1, std::ios::end);
  f.put(c == '}' ? '}' : static_cast<char>(c ^ 1));  // config.json: same bytes, written (its ctime moves)
}
}  // namespace app_api_source_change

TEST(AppApi, ASourceWrittenDuringTheJobFailsItInsteadOfCompletingAMixedOutput) {
  namespace sc = app_api_source_change;
  const stop_hook_for_test edit(&sc::edit_once);
  for (const std::string file : {"config.json", "model.safetensors"}) {
    test::temp_dir d;
    fs::copy(test::fixture("deepseek_v3/hf"), d / "src", fs::copy_options::recursive);
    sc::edit_path = d / "src" + "/" + file;
    sc::edited = false;
    app::convert_request req;
    req.source = d / "src";
    req.output = d / "out";
    req.to = "transformers_v5";
    req.shard_size = 60'000;
    auto r = app::convert(req);
    ASSERT_TRUE(sc::edited) << file;
    ASSERT_FALSE(r.ok()) << file << ": completed although its source was written during the job";
    EXPECT_EQ(r.error().kind, app::error_kind::input) << r.error().message;
    EXPECT_NE(r.error().message.find(file + ": the source changed while this job read it (it was "), std::string::npos)
        << r.error().message;
    EXPECT_FALSE(fs::exists(req.output + "/config.json")) << file << ": the output looks complete";
    EXPECT_FALSE(fs::exists(req.output + "/model.safetensors.index.json")) << file;
  }
}

// A user deleted a running job's "stale" lock, a second job took the directory, and the first,
// failing, removed the shards it had completed and the second's lock, and rmdir'ed OUT once it
// was empty: all progress lost. A writer whose lock file is gone stops at its next shard and
// removes nothing it completed; --resume then finishes the output.
namespace app_api_lock_lost {
std::string lock_path;
bool removed = false;
void remove_lock_once(const char* point) {
  if (std::string_view(point) != "shard-done" || removed) return;
  removed = true;
  std::filesystem::remove(lock_path);
}
}  // namespace app_api_lock_lost

TEST(AppApi, AJobWhoseLockIsDeletedStopsAndKeepsItsShards) {
  namespace ll = app_api_lock_lost;
  test::temp_dir d;
  app::convert_request req;
  req.source = test::fixture("deepseek_v3/hf");
  req.output = d / "out";
  req.to = "transformers_v5";
  req.shard_size = 60'000;
  req.threads = 1;
  ll::lock_path = req.output + "/.moereg-lock";
  ll::removed = false;
  std::optional<stop_hook_for_test> hook(&ll::remove_lock_once);
  auto r = app::convert(req);
  hook.reset();
  ASSERT_TRUE(ll::removed);
  ASSERT_FALSE(r.ok()) << "completed without its lock";
  EXPECT_NE(r.error().message.find("was removed or replaced while this job wrote into it"), std::string::npos) << r.error().message;
  EXPECT_TRUE(fs::exists(req.output + "/model-00001-of-00007.safetensors")) << "the first shard was removed";
  EXPECT_FALSE(fs::exists(req.output + "/config.json"));
  req.resume = true;
  r = app::convert(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_GE(r.value().resumed_shards, 1u);
  auto v = app::verify({req.output, test::fixture("deepseek_v3/transformers_v5.safetensors"), {}});
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_TRUE(v.value().equal);
}

TEST(AppApi, DryRunListsThePlanAndWritesNothing) {
  test::temp_dir d;
  app::convert_request req;
  req.source = test::fixture("mixtral/hf");
  req.output = d / "never";
  req.to = "transformers_v5";
  req.dry_run = true;
  auto r = app::convert(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().plan.size(), r.value().tensors);
  EXPECT_FALSE(r.value().plan.empty());
  EXPECT_FALSE(fs::exists(req.output));
}

TEST(AppApi, BadRequestsAreUsageProblemsAndWriteNothing) {
  test::temp_dir d;
  app::convert_request req;
  req.source = test::fixture("qwen3_moe/hf");
  req.output = d / "out";
  auto r = app::convert(req);  // no target layout
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, app::error_kind::usage) << r.error().message;
  req.to = "transformers_v5";
  req.experts = std::make_pair<std::int64_t, std::int64_t>(3, 3);
  r = app::convert(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, app::error_kind::usage) << r.error().message;
  req.experts.reset();
  req.threads = 5000;
  r = app::convert(req);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("5000"), std::string::npos) << r.error().message;
  req.threads = 0;
  req.to = "nosuchlayout";
  r = app::convert(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, app::error_kind::input);
  EXPECT_NE(r.error().message.find("nosuchlayout"), std::string::npos) << r.error().message;
  EXPECT_FALSE(fs::exists(req.output));
}

// The cancel flag stops the job at its next write and keeps what a resume needs; the same
// request with resume = true then finishes it, and a later job is not cancelled by the old flag.
TEST(AppApi, CancelKeepsAResumableOutput) {
  test::temp_dir d;
  std::atomic<bool> cancel{true};
  app::convert_request req;
  req.source = test::fixture("deepseek_v3/hf");
  req.output = d / "out";
  req.to = "transformers_v5";
  req.shard_size = 60'000;
  req.cancel = &cancel;
  auto r = app::convert(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, app::error_kind::cancelled) << r.error().message;
  EXPECT_EQ(r.error().signal, 0);
  EXPECT_NE(r.error().message.find("interrupted by a cancel request"), std::string::npos) << r.error().message;
  EXPECT_TRUE(fs::exists(req.output + "/.moereg-resume.json"));
  EXPECT_FALSE(fs::exists(req.output + "/config.json"));

  cancel = false;
  req.resume = true;
  r = app::convert(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto v = app::verify({req.output, test::fixture("deepseek_v3/transformers_v5.safetensors"), {}});
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_TRUE(v.value().equal);
}

// library.md promised that a signal stops a job as `cancelled` with its number, but the library
// installed no handlers: ^C killed the program and left a .partial shard and the lock behind.
// In a child process (the signal stays recorded for the process's life): without the guard
// SIGINT kills it; with it, the conversion returns cancelled with signal 2 and a resumable output.
TEST(AppApi, StopOnSignalsTurnsSigintIntoACancelledJob) {
  test::temp_dir d;
  auto child = [&](bool guarded, const std::string& out) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::signal(SIGINT, SIG_DFL);  // a shell's background job starts with SIGINT ignored
      std::optional<app::stop_on_signals> guard;
      if (guarded) guard.emplace();
      ::raise(SIGINT);
      app::convert_request req;
      req.source = test::fixture("deepseek_v3/hf");
      req.output = out;
      req.to = "transformers_v5";
      req.shard_size = 60'000;
      auto r = app::convert(req);
      const bool as_expected = !r.ok() && r.error().kind == app::error_kind::cancelled && r.error().signal == SIGINT &&
                               app::stop_on_signals::received() == SIGINT &&
                               r.error().message.find("interrupted by SIGINT") != std::string::npos;
      ::_exit(as_expected ? 0 : 3);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    return st;
  };
  const int unguarded = child(false, d / "a");
  EXPECT_TRUE(WIFSIGNALED(unguarded) && WTERMSIG(unguarded) == SIGINT) << "status " << unguarded;
  const int st = child(true, d / "b");
  ASSERT_TRUE(WIFEXITED(st)) << "status " << st;
  EXPECT_EQ(WEXITSTATUS(st), 0) << "not cancelled with SIGINT";
  EXPECT_FALSE(fs::exists(d / "b/config.json"));
  app::convert_request req;
  req.source = test::fixture("deepseek_v3/hf");
  req.output = d / "b";
  req.to = "transformers_v5";
  req.shard_size = 60'000;
  req.resume = true;
  auto r = app::convert(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
}

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_app_api {
namespace {

app::moe_run_request moe_request(const safetensors_file& ref, const std::string& backend) {
  const tensor_info* in = ref.find("input");
  app::moe_run_request req;
  req.checkpoint = test::fixture("qwen3_moe/hf");
  req.layer = 1;
  req.input = {ref.data(*in), "F32", in->shape[0], in->shape[1], "moe_block.safetensors: 'input'"};
  req.backend = backend;
  return req;
}

}  // namespace

TEST(AppApi, RunMoeMatchesTheReferenceBlockAndAutoChoosesABackend) {
  safetensors_file ref(test::fixture("qwen3_moe/moe_block.safetensors"));
  auto cpu = app::run_moe(moe_request(ref, "cpu"));
  ASSERT_TRUE(cpu.ok()) << cpu.error().message;
  EXPECT_EQ(cpu.value().backend, "cpu");
  const tensor_info* out = ref.find("output");
  ASSERT_EQ(cpu.value().output.size(), out->numel());
  const float* want = reinterpret_cast<const float*>(ref.data(*out));
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < cpu.value().output.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::abs(cpu.value().output[i] - want[i])));
    scale = std::max(scale, static_cast<double>(std::abs(want[i])));
  }
  EXPECT_LE(worst, 2e-2 * scale) << "the layer's output against transformers'";

  auto best = app::run_moe(moe_request(ref, "auto"));
  ASSERT_TRUE(best.ok()) << best.error().message;
  EXPECT_NE(best.value().why.find("auto"), std::string::npos) << best.value().why;

  auto nonesuch = app::run_moe(moe_request(ref, "nonesuch"));
  ASSERT_FALSE(nonesuch.ok());
  EXPECT_EQ(nonesuch.error().kind, app::error_kind::input);
  EXPECT_NE(nonesuch.error().message.find("no backend named 'nonesuch'"), std::string::npos) << nonesuch.error().message;

  app::moe_run_request wrong = moe_request(ref, "cpu");
  wrong.input.hidden += 1;
  auto shape = app::run_moe(wrong);
  ASSERT_FALSE(shape.ok());
  EXPECT_NE(shape.error().message.find("moe_block.safetensors: 'input' has shape"), std::string::npos) << shape.error().message;
}

// A backend that outscores every other one but refuses the layer hands over to the next best;
// asked for by name, its refusal is the problem.
TEST(AppApi, AutoFallsBackWhenTheBestBackendRefusesTheLayer) {
  test::temp_dir tmp;
  const std::string dir = tmp / "vendor";
  fs::create_directories(dir);
  ::chmod(tmp.path().c_str(), 0755);
  ::chmod(dir.c_str(), 0755);
  fs::copy_file(std::string(MOEREG_ABI_LIB_DIR) + "/libmoereg_backend_abitest-fast.so", dir + "/libmoereg_backend_abitest-fast.so");
  safetensors_file ref(test::fixture("qwen3_moe/moe_block.safetensors"));
  app::moe_run_request req = moe_request(ref, "auto");
  req.plugin_paths = {dir};
  auto r = app::run_moe(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_NE(r.value().why.find("abitest refused the layer"), std::string::npos) << r.value().why;
  EXPECT_NE(r.value().backend, "abitest");
  req.backend = "abitest";
  r = app::run_moe(req);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("the abitest backend is a registry test fixture"), std::string::npos) << r.error().message;
}

// kernel_copy = false (convert --no-copy-file-range) writes every byte from the mapping: the
// same output, bit for bit.
TEST(AppApi, WithoutKernelCopiesTheOutputIsTheSame) {
  test::temp_dir d;
  app::convert_request req;
  req.source = test::fixture("qwen3_moe/hf");  // hf to hf: every tensor is one contiguous copy
  req.output = d / "hf";
  req.to = "hf";
  req.kernel_copy = false;
  auto r = app::convert(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto v = app::verify({req.output, test::fixture("qwen3_moe/hf"), {}});
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_TRUE(v.value().equal);
  EXPECT_EQ(v.value().how, "by tensor name");
}

// Routing values from config.json are range-checked before a token is routed: numbers that
// route differently from the model would still give numbers.
TEST(AppApi, RoutingValuesOutOfRangeAreRefusedNamingTheField) {
  safetensors_file ref(test::fixture("deepseek_v3/moe_block.safetensors"));
  const tensor_info* in = ref.find("input");
  const std::string base = test::fixture("deepseek_v3/hf/config.json");
  const std::string original = test::read_bytes(base);
  struct bad_case {
    std::string from, to, expect;
  };
  for (const bad_case& c : {bad_case{"\"n_group\": 2", "\"n_group\": 3", "routing n_group 3"},
                            bad_case{"\"topk_group\": 1", "\"topk_group\": 4", "routing topk_group 4"},
                            bad_case{"\"routed_scaling_factor\": 2.5", "\"routed_scaling_factor\": -1", "routing scaling -1"}}) {
    SCOPED_TRACE(c.to);
    test::temp_dir d;
    fs::copy(test::fixture("deepseek_v3/hf"), d / "m", fs::copy_options::recursive);
    std::string cfg = original;
    ASSERT_NE(cfg.find(c.from), std::string::npos) << "the fixture's config.json changed";
    cfg.replace(cfg.find(c.from), c.from.size(), c.to);
    test::write_bytes(d / "m/config.json", cfg);
    app::moe_run_request req;
    req.checkpoint = d / "m";
    req.layer = 1;
    req.input = {ref.data(*in), "F32", in->shape[0], in->shape[1], "input"};
    req.backend = "cpu";
    auto r = app::run_moe(req);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, app::error_kind::input);
    EXPECT_NE(r.error().message.find(c.expect), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("config.json"), std::string::npos) << r.error().message;
  }
}

// LoRA through the API: describe an adapter, rewrite it in another form (exactly), and the
// problem kinds of bad requests.
TEST(AppApi, LoraInspectAndConvert) {
  test::temp_dir d;
  app::lora_open_request src;
  src.adapter = test::fixture("lora/mixtral/peft_param_wrapper");
  auto info = app::inspect_lora(src);
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info.value().form, "peft_param_wrapper");
  EXPECT_EQ(info.value().family, "mixtral");
  EXPECT_EQ(info.value().orientation, "peft>=0.19.1");
  EXPECT_GT(info.value().expert_pairs, 0u);
  EXPECT_FALSE(info.value().experts.empty());
  EXPECT_FALSE(info.value().others.empty());

  app::lora_convert_request req;
  req.source = src;
  req.output = d / "pe";
  req.to = "peft_per_expert";
  auto r = app::convert_lora(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().from, "peft_param_wrapper");
  EXPECT_EQ(r.value().to, "peft_per_expert");
  EXPECT_GT(r.value().tensors, 0u);
  auto v = app::verify({d / "pe/adapter_model.safetensors", test::fixture("lora/mixtral/peft_per_expert/adapter_model.safetensors"), {}});
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_TRUE(v.value().equal);

  req.to = "gguf";
  req.output = d / "x";
  r = app::convert_lora(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, app::error_kind::usage);
  EXPECT_FALSE(fs::exists(d / "x"));
}

// The benchmark through the API, without PyTorch: one row per token count, timed.
TEST(AppApi, BenchMoeTimesEveryTokenCount) {
  app::moe_bench_request req;
  req.shape = "small";
  req.experts = 8;
  req.hidden = 64;
  req.intermediate = 32;
  req.top_k = 2;
  req.routing.scoring = MOEREG_SCORING_SOFTMAX;
  req.routing.renormalize = 1;
  req.routing.routed_scaling_factor = 1.0f;
  req.tokens = {1, 3};
  req.backend = "cpu";
  req.reference = false;
  req.min_seconds = 0.01;
  auto r = app::bench_moe(req);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r.value().backend, "cpu");
  ASSERT_EQ(r.value().rows.size(), 2u);
  for (const auto& row : r.value().rows) {
    EXPECT_GT(row.seconds, 0.0);
    EXPECT_GT(row.weight_bytes, 0.0);
    EXPECT_TRUE(std::isnan(row.reference_seconds));
  }
  EXPECT_GT(r.value().bandwidth, 0.0);
  req.top_k = 9;  // more than E
  r = app::bench_moe(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, app::error_kind::usage);
}

}  // namespace test_app_api
