// SPDX-License-Identifier: Apache-2.0
// layout_stream.h - a checkpoint's tensors in another layout of its family, made in memory
// one at a time: for loading a model or syncing weights without writing a converted copy.
//
//   moereg::app::layout_stream_request req;
//   req.source = "Qwen3-30B-A3B";   // stored as hf (one tensor per expert)
//   req.to = "transformers_v5";     // fused, stacked experts
//   auto s = moereg::app::open_layout_stream(req);
//   if (!s) return fail(s.error());
//   std::vector<std::byte> buf;
//   for (std::size_t i = 0; i < s.value()->tensors().size(); ++i) {
//     buf.resize(s.value()->tensors()[i].bytes);
//     if (auto r = s.value()->produce(i, buf.data(), buf.size()); !r) return fail(r.error());
//     load(s.value()->tensors()[i], buf);
//   }
//
// The plan is the one convert() makes for the same request (fused, transposed, renamed,
// FP8 scales re-gridded, hooks run), and produce() fills the buffer with the bytes convert()
// would write for that tensor. Besides the caller's buffer, memory holds one expert slot per
// thread; source pages are released as they are consumed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moereg/app/export.h"
#include "moereg/app/log.h"
#include "moereg/app/model.h"
#include "moereg/app/result.h"

namespace moereg::app {

struct layout_stream_request {
  std::string source;                     // directory, .safetensors or .gguf
  std::string to;                         // target layout (or alias): "transformers_v5", "hf", ...
  std::string from;                       // source layout; empty: detected
  std::string family;                     // plugin or model_type; empty: from the config
  std::vector<std::string> plugin_paths;
  int threads = 0;                        // expert slots assembled in parallel; 0: every CPU
  std::optional<std::pair<std::int64_t, std::int64_t>> experts;  // experts [first, second) only
  bool to_bf16 = false;                   // dequantize quantized weights (FP8, MXFP4, int4) to bf16
};

class MOEREG_API layout_stream {
 public:
  struct impl;
  explicit layout_stream(std::unique_ptr<impl> state);
  ~layout_stream();
  layout_stream(const layout_stream&) = delete;
  layout_stream& operator=(const layout_stream&) = delete;

  const std::string& family() const noexcept;
  const std::string& from() const noexcept;  // the source's layout
  const std::string& to() const noexcept;    // the target layout's own name (an alias resolved)
  // Every output tensor, in the order convert() writes them: name, dtype, shape, bytes.
  const std::vector<tensor_entry>& tensors() const noexcept;
  // The largest `bytes` of tensors(): a buffer of this size fits every one.
  std::uint64_t largest_bytes() const noexcept;

  // Makes tensor `index` into dst, which holds `capacity` bytes (at least the tensor's
  // `bytes`). A tensor may be produced again; calls may run at once from several threads
  // (each already spreads its expert slots over `threads`).
  result<done> produce(std::size_t index, void* dst, std::uint64_t capacity) const noexcept;

 private:
  std::unique_ptr<impl> impl_;
};

MOEREG_API result<std::shared_ptr<const layout_stream>> open_layout_stream(const layout_stream_request& request) noexcept;

}  // namespace moereg::app
