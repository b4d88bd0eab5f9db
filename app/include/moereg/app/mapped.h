// SPDX-License-Identifier: Apache-2.0
// mapped.h - a checkpoint's tensors as they lie in its files, without a copy: the files are
// mapped read-only and each tensor is a pointer into the map, valid while the handle lives.
// For front ends that hand tensors to another runtime (the Python module's numpy views).
//
//   moereg::app::map_request req;
//   req.path = "Qwen3-30B-A3B";
//   auto ck = moereg::app::map_checkpoint(req);
//   if (!ck) { std::cerr << ck.error().message << "\n"; return 1; }
//   for (const auto& t : ck.value()->info().tensors)
//     use(t.name, t.dtype, t.shape, ck.value()->data(t.name));  // t.bytes bytes, read-only
//
// Opening validates every header and the index and reads no tensor data: a page of a
// tensor is read from disk when it is first touched. The files must not be truncated while
// mapped (reading a page past the new end raises SIGBUS, as with any mapped file).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "moereg/app/export.h"
#include "moereg/app/model.h"
#include "moereg/app/result.h"

namespace moereg::app {

// open_model's request (path, family, layout, plugin_paths), and:
struct map_request : open_request {
  // false: the tensors only; no family, layout or config is looked for, so any safetensors or
  // GGUF file opens (a lone file without config.json, a file of reference outputs).
  bool identify = true;
};

class MOEREG_API mapped_checkpoint {
 public:
  struct impl;
  explicit mapped_checkpoint(std::unique_ptr<impl> state);
  ~mapped_checkpoint();
  mapped_checkpoint(const mapped_checkpoint&) = delete;
  mapped_checkpoint& operator=(const mapped_checkpoint&) = delete;

  // What open_model() reports (without `identify`: path, tensors and total_bytes only). A
  // GGUF block-quantized tensor has its block type as dtype ("Q4_K") and its byte shape:
  // its bytes are opaque blocks, the innermost dimension counts bytes.
  const model_info& info() const noexcept;
  // The first byte of a tensor inside the map (info()'s `bytes` long), or nullptr when the
  // checkpoint holds no tensor of that name. Aligned as the file aligns it: safetensors
  // promises nothing, so a reader of wider elements must not assume alignment.
  const std::byte* data(std::string_view name) const noexcept;

 private:
  std::unique_ptr<impl> impl_;
};

MOEREG_API result<std::shared_ptr<const mapped_checkpoint>> map_checkpoint(const map_request& request) noexcept;

}  // namespace moereg::app
