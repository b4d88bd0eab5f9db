// SPDX-License-Identifier: Apache-2.0
#include "moereg/gguf/gguf_tensor_file.h"

#include <cstdio>
#include <cstdint>
#include <filesystem>

#include "moereg/base/error.h"

namespace fs = std::filesystem;

namespace moereg {

gguf_tensor_file::gguf_tensor_file(const std::string& path) : gguf_(path) {
  tensors_.reserve(gguf_.tensors().size());
  for (const auto& g : gguf_.tensors()) {
    tensor_info t;
    t.name = g.name;
    t.shape = g.shape;
    t.begin = g.offset;
    t.end = g.offset + g.nbytes;
    if (auto d = g.dtype()) {
      t.type = *d;
    } else {
      // Opaque blocks: one U8 per byte, rows of ne0 / block * block bytes (validated by the parser).
      const ggml_type_traits& tr = ggml_traits(g.type);
      t.type = dtype::U8;
      t.shape.back() = static_cast<std::int64_t>(g.ne[0] / tr.block_size * tr.type_size);
      t.ggml_blocks = static_cast<std::uint32_t>(g.type);
    }
    tensors_.push_back(std::move(t));
  }
}

std::vector<std::string> gguf_split_parts(const std::string& path) {
  // llama.cpp's split naming: <prefix>-%05d-of-%05d.gguf, parts numbered from 1.
  std::string name = fs::path(path).filename().string();
  auto digits = [&](std::size_t at) {
    unsigned v = 0;
    for (std::size_t i = at; i < at + 5; ++i) {
      if (name[i] < '0' || name[i] > '9') return 0u;
      v = v * 10 + static_cast<unsigned>(name[i] - '0');
    }
    return v;
  };
  if (name.size() <= 20) return {path};
  std::size_t dash = name.size() - 20;  // "-00001-of-00003.gguf"
  if (name[dash] != '-' || name.compare(dash + 6, 4, "-of-") != 0 || name.compare(dash + 15, 5, ".gguf") != 0) return {path};
  unsigned part = digits(dash + 1), count = digits(dash + 10);
  if (part == 0 || count < 2 || part > count) return {path};
  if (part != 1)
    throw error(path + ": part " + std::to_string(part) + " of a split GGUF model; open part 1 (" + name.substr(0, dash) +
                "-00001-of-" + name.substr(dash + 10, 5) + ".gguf)");
  std::vector<std::string> parts;
  for (unsigned i = 1; i <= count; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "-%05u-of-%05u.gguf", i, count);
    fs::path p = fs::path(path).parent_path() / (name.substr(0, dash) + buf);
    if (!fs::exists(p))
      throw error(path + ": split GGUF model of " + std::to_string(count) + " parts, but part " + p.string() + " is missing");
    parts.push_back(p.string());
  }
  return parts;
}

}  // namespace moereg
