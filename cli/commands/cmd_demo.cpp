// SPDX-License-Identifier: Apache-2.0
// moereg demo: every feature that exists, on a small checkpoint it writes itself.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include "api_result.h"
#include "command.h"
#include "moereg/app/inspect.h"
#include "moereg/app/synth.h"
#include "moereg/app/verify.h"
#include "moereg/base/units.h"
#include "moereg/checkpoint/summary.h"
#include "moereg/safetensors/safetensors_writer.h"
#include "moereg/safetensors/tensor_info.h"

namespace moereg::cli {

namespace {

class step_timer {
 public:
  explicit step_timer(std::string what) : what_(std::move(what)), start_(std::chrono::steady_clock::now()) {
    std::cout << "==> " << what_ << "\n";
  }
  ~step_timer() {
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::cout << "    done in " << format_duration(seconds) << "\n";
  }

 private:
  std::string what_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

int run_convert(const std::vector<std::string>&, global_options&);
int run_verify(const std::vector<std::string>&, global_options&);
int run_moe(const std::vector<std::string>&, global_options&);

int run_demo(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("demo [--dir DIR] [--keep]",
                   "Write a small qwen3_moe-shaped example checkpoint (random bf16, no download), then run\n"
                   "every moereg feature on it, printing what each step did and how long it took.");
  p.options().add_options()("dir", po::value<std::string>(), "work directory (default: a new temporary directory)")(
      "keep", po::bool_switch(), "keep the work directory");
  auto vm = p.parse(args, globals);
  namespace fs = std::filesystem;
  fs::path dir = vm.count("dir") ? fs::path(vm["dir"].as<std::string>())
                                 : fs::temp_directory_path() / ("moereg-demo-" + std::to_string(::getpid()));
  bool keep = vm["keep"].as<bool>() || vm.count("dir");
  struct cleanup {
    fs::path d;
    bool keep;
    ~cleanup() {
      std::error_code ec;
      if (!keep) fs::remove_all(d, ec);
    }
  } guard{dir, keep};
  fs::create_directories(dir);

  std::string src = (dir / "example").string();
  const std::int64_t hidden = 64;  // the tiny preset's
  {
    step_timer t("write example checkpoint (qwen3_moe shapes: E=8 H=64 I=32, 2 layers) to " + src);
    app::synth_request r;
    r.out = src;
    std::cout << "    " << human_bytes(take(app::synthesize(r)).bytes) << " of tensors\n";
  }
  {
    step_timer t("inspect " + src);
    const app::checkpoint_report s = take(app::inspect({src, {}}));
    std::cout << "    " << s.tensor_count << " tensors, " << human_bytes(s.total_bytes) << "\n";
    for (const auto& g : s.groups)
      if (g.count > 1) std::cout << "    " << g.pattern << "  " << g.dtype << " " << shape_string(g.shape) << "  x" << g.count << "\n";
  }
  std::string sharded = (dir / "example-sharded").string();
  {
    step_timer t("write the same model again, sharded at 64 KiB, to " + sharded);
    app::synth_request r;
    r.out = sharded;
    r.shard_size = 64 * 1024;
    take(app::synthesize(r));
    std::cout << "    " << take(app::inspect({sharded, {}})).files << " shards with model.safetensors.index.json\n";
  }
  {
    step_timer t("verify " + src + " against " + sharded);
    const app::verify_report c = take(app::verify({src, sharded, {}}));
    std::cout << "    " << (c.equal ? "equal" : "DIFFERENT") << ": " << c.compared << " tensors, " << c.bytes_compared
              << " bytes compared\n";
    if (!c.equal) return 1;
  }
  std::string v5 = (dir / "example-transformers_v5").string(), back = (dir / "example-back").string();
  global_options quiet = globals;
  quiet.json = false;
  {
    step_timer t("convert to transformers_v5 (fused [E, 2I, H] experts), streaming");
    if (run_convert({src, v5, "--to", "transformers_v5", "--log-level", "warn"}, quiet) != 0) return 1;
  }
  {
    step_timer t("verify the converted checkpoint against the original, through their layouts");
    if (run_verify({v5, src, "--log-level", "warn"}, quiet) != 0) return 1;
  }
  {
    step_timer t("convert back to the hub layout and verify byte for byte");
    if (run_convert({v5, back, "--to", "hf", "--log-level", "warn"}, quiet) != 0) return 1;
    if (run_verify({back, src, "--log-level", "warn"}, quiet) != 0) return 1;
  }
  {
    step_timer t("run the MoE block of layer 1 on 5 random tokens (routing from the family plugin)");
    std::string in = (dir / "tokens.safetensors").string(), out = (dir / "moe-out.safetensors").string();
    {
      safetensors_writer w(in, {{"input", dtype::F32, {5, hidden}}}, {});
      std::vector<float> x(static_cast<std::size_t>(5 * hidden));
      for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7919) % 201) / 100.0f - 1.0f;
      w.write(0, 0, x.data(), x.size() * 4);
      w.commit();
    }
    if (run_moe({"run", v5, "--layer", "1", "--input", in, "--output", out, "--log-level", "warn"}, quiet) != 0) return 1;
  }
  std::cout << (keep ? "kept " + dir.string() : std::string("removed the work directory")) << "\n";
  return 0;
}

}  // namespace moereg::cli
