// SPDX-License-Identifier: Apache-2.0
// convert.h - convert a checkpoint from one layout of its family to another.
//
//   moereg::app::convert_request req;
//   req.source = "Qwen3-30B-A3B";              // stored as hf (one tensor per expert)
//   req.output = "qwen3-v5";                   // created; must not exist or be empty
//   req.to = "transformers_v5";                // fused, stacked experts
//   req.on_progress = [](const moereg::app::convert_progress& p) { ... };
//   auto r = moereg::app::convert(req);
//   if (!r) return fail(r.error());            // kind + a message naming the file and the problem
//
// Tensors stream from the mapped source to the output in bounded memory, shards in parallel;
// the output is locked against other moereg processes while it is written and becomes
// complete atomically (configuration, then the index, last). A job stopped by a signal or by
// `cancel` keeps its completed shards and a resume log: the same request with `resume = true`
// finishes it, checking each kept shard's size and checksum and refusing if a source changed.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moereg/app/export.h"
#include "moereg/app/result.h"

namespace moereg::app {

struct convert_progress {
  std::uint64_t bytes = 0, total_bytes = 0;
  std::uint64_t tensors = 0, total_tensors = 0;
  double seconds = 0;  // since the writing started
  bool final = false;  // the last call, after every byte is written
};

// For tests: make a job fail the way a crash would, to exercise --resume.
struct fault_injection {
  // After this many shards are complete and logged, stop as a killed process would: no
  // configuration or index written, the completed shards and the resume log kept. The result
  // is a problem of kind `cancelled`. 0: off.
  int abandon_after_shards = 0;
  // The bytes the output's filesystem has free, as the space check before the first shard
  // sees them (unset: what statvfs says), so a test can show the refusal of a job too large.
  std::optional<std::uint64_t> free_bytes;
};

struct convert_request {
  std::string source;                     // directory, .safetensors or .gguf
  std::string output;                     // directory; may be empty for a dry run
  std::string to;                         // target layout (or alias): "transformers_v5", "hf", "gguf", ...
  std::string from;                       // source layout; empty: detected
  std::string family;                     // plugin or model_type; empty: from the config
  std::vector<std::string> plugin_paths;
  int threads = 0;                           // 0: every CPU this process may use; at most 4096
  std::optional<std::uint64_t> shard_size;   // bytes per output shard; 0: one file; default 5 GB
  std::optional<std::pair<std::int64_t, std::int64_t>> experts;  // write experts [first, second) only
  // N > 0: expert-parallel slices, N checkpoints OUT/ep-{r}-of-{N}/: slice r holds experts
  // [r*E/N, (r+1)*E/N) of every MoE layer, numbered from 0, every non-expert tensor, and a
  // config.json giving the local expert count and, under "moereg", the global ids it holds.
  // E must divide by N. Not with `experts`, nor with a .gguf target. docs/mpi.md.
  int expert_parallel = 0;
  bool to_bf16 = false;   // dequantize quantized weights (FP8, MXFP4, int4; a .gguf's ggml blocks) to bf16
  bool to_f32 = false;    // a .gguf's ggml blocks (and F16/BF16 matrices) decoded to f32 instead
  bool dry_run = false;   // plan and check everything, write nothing (the report lists the plan)
  bool resume = false;    // finish an interrupted job into `output`
  // Contiguous bytes are copied by the kernel (copy_file_range) where it can; false writes
  // them from the mapped source instead (filesystems where copy_file_range misbehaves).
  bool kernel_copy = true;
  // Called from a helper thread about ten times a second while shards are written, and once
  // more with final = true. Keep it short; it must not throw.
  std::function<void(const convert_progress&)> on_progress;
  // Set to true (from any thread) to stop the job at its next write, as a signal would.
  const std::atomic<bool>* cancel = nullptr;
  fault_injection fault;
};

struct planned_tensor {
  std::string name, dtype;
  std::vector<std::int64_t> shape;
  std::string origin;  // where its bytes come from: "model.layers.0.mlp.experts.{0..127}.gate_proj.weight (fused)"
};

struct convert_report {
  std::string family, model_type, from, to, output;
  std::uint64_t tensors = 0, total_bytes = 0;
  std::uint64_t shards = 0;          // files written (or planned)
  std::uint64_t resumed_shards = 0;  // kept from an interrupted run
  double plan_seconds = 0, write_seconds = 0;
  std::vector<planned_tensor> plan;  // filled for a dry run
};

MOEREG_API result<convert_report> convert(const convert_request& request) noexcept;

}  // namespace moereg::app
