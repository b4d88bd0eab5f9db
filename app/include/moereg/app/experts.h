// SPDX-License-Identifier: Apache-2.0
// experts.h - a fused-MoE backend on experts the caller holds, routed by the caller: what a
// framework's MoE layer needs to hand its expert matmuls to moereg (the Python module's
// transformers integration does this for each MoE layer of a loaded model).
//
//   moereg::app::experts_request req;
//   req.backend = "cpu";
//   req.weights = {gate_up, down, "BF16", E, H, I};      // transformers_v5 order, host memory
//   req.top_k = K;
//   auto b = moereg::app::create_experts_backend(req);
//   if (!b) return fail(b.error());
//   auto r = b.value()->forward({x, "BF16", T, ids, weights, K, out});  // out: [T, H] float32
//
// The backend reads the weights where they lie (the cpu backend may make one copy in its
// tiles' order at create; the cuda backend copies host weights to the GPU once; describe()
// says so) and keeps pointers to them: they must stay valid and unchanged until the backend
// is destroyed. Weights already on a GPU (`device` >= 0: a framework's parameters) are read
// there by the cuda backend without a copy; the cpu backend refuses them, so "auto" takes cuda.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "moereg/app/export.h"
#include "moereg/app/log.h"
#include "moereg/app/result.h"

namespace moereg::app {

// The routed experts of one MoE layer, C-contiguous, in host memory or on one CUDA device.
struct expert_weights {
  const void* gate_up = nullptr;  // [E, 2I, H]: rows [0, I) gate, [I, 2I) up (transformers 5's gate_up_proj)
  const void* down = nullptr;     // [E, H, I] (transformers 5's down_proj)
  std::string dtype = "BF16";     // "BF16", "F16" or "F32"
  std::int64_t experts = 0, hidden = 0, intermediate = 0;
  // -1: host memory. N >= 0: the memory of CUDA device N (BF16 only); every buffer of every
  // forward call is then in that device's memory too.
  int device = -1;
};

struct experts_request {
  expert_weights weights;
  std::int64_t top_k = 0;        // experts per token, the same in every forward call
  std::string backend = "auto";  // "cpu", "cuda", another installed backend, or "auto"
  int threads = 0;               // CPU threads; 0: every CPU this process may use
  std::vector<std::pair<std::string, std::string>> backend_options;  // tuning, docs/backends.md
  std::vector<std::string> plugin_paths;
};

// One call: out[t] = sum_k topk_weights[t, k] * silu(gate_e(x[t])) * up_e(x[t]) through
// down_e, with e = topk_ids[t, k]. C-contiguous, in the weights' memory (host, or their device;
// device calls run on the backend's stream, ordered with the legacy default stream).
struct experts_call {
  const void* x = nullptr;           // [tokens, hidden]
  std::string x_dtype = "F32";       // "F32" or "BF16"
  std::int64_t tokens = 0;
  const std::int64_t* topk_ids = nullptr;  // [tokens, top_k], each in [0, experts)
  const float* topk_weights = nullptr;     // [tokens, top_k]
  std::int64_t top_k = 0;                  // the request's top_k
  float* out = nullptr;              // [tokens, hidden], overwritten
};

class MOEREG_API experts_backend {
 public:
  struct impl;
  explicit experts_backend(std::unique_ptr<impl> state);
  ~experts_backend();
  experts_backend(const experts_backend&) = delete;
  experts_backend& operator=(const experts_backend&) = delete;

  const std::string& name() const noexcept;  // the backend that runs: "cpu", ...
  const std::string& why() const noexcept;   // "asked for with backend cpu", "auto: best probe score ..."
  // The backend's own account of its kernels and any copy it made (JSON text), or "".
  result<std::string> describe() const noexcept;

  // One call at a time per backend (a backend keeps per-handle scratch). Expert ids out of
  // range are refused before the backend sees them when they are in host memory; in device
  // memory nothing reads them on the host, and an id outside [0, experts) contributes nothing.
  result<done> forward(const experts_call& call) const noexcept;

 private:
  std::unique_ptr<impl> impl_;
};

MOEREG_API result<std::shared_ptr<experts_backend>> create_experts_backend(const experts_request& request) noexcept;

}  // namespace moereg::app
