// SPDX-License-Identifier: Apache-2.0
#include "moereg/safetensors/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "moereg/base/checked.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/base/printable.h"

namespace moereg {

std::uint64_t tensor_spec::nbytes() const {
  std::uint64_t n = dtype_size(type);
  for (auto d : shape) n = checked_mul(n, static_cast<std::uint64_t>(d), "tensor " + quote(name) + ": byte size");
  return n;
}

namespace {
// Rank of a dtype in the Rust safetensors Dtype enum (which orders by alignment).
int rust_rank(dtype t) {
  switch (t) {
    case dtype::BOOL: return 0;
    case dtype::U8: return 4;
    case dtype::I8: return 5;
    case dtype::F8_E5M2: return 6;
    case dtype::F8_E4M3: return 7;
    case dtype::F8_E8M0: return 8;
    case dtype::I16: return 9;
    case dtype::U16: return 10;
    case dtype::F16: return 11;
    case dtype::BF16: return 12;
    case dtype::I32: return 13;
    case dtype::U32: return 14;
    case dtype::F32: return 15;
    case dtype::F64: return 16;
    case dtype::I64: return 17;
    case dtype::U64: return 18;
  }
  return 0;
}
}  // namespace

void sort_like_safetensors(std::vector<tensor_spec>& specs) {
  std::stable_sort(specs.begin(), specs.end(), [](const tensor_spec& a, const tensor_spec& b) {
    int ra = rust_rank(a.type), rb = rust_rank(b.type);
    return ra != rb ? ra > rb : a.name < b.name;
  });
}

safetensors_layout layout_safetensors(const std::vector<tensor_spec>& specs,
                                      const std::map<std::string, std::string>& metadata) {
  safetensors_layout out;
  std::string json = "{";
  bool first = true;
  if (!metadata.empty()) {
    json += "\"__metadata__\":{";
    bool mfirst = true;
    for (const auto& [k, v] : metadata) {
      if (!is_valid_utf8(k) || !is_valid_utf8(v))
        throw error("__metadata__ entry " + quote(k) + ": not valid UTF-8, which a safetensors header cannot hold");
      if (!mfirst) json += ',';
      mfirst = false;
      json::append_quoted(json, k);
      json += ':';
      json::append_quoted(json, v);
    }
    json += '}';
    first = false;
  }
  std::uint64_t offset = 0;
  out.tensors.reserve(specs.size());
  for (const auto& s : specs) {
    if (s.name == "__metadata__") throw error("tensor name '__metadata__' is reserved by the safetensors format");
    // The header is JSON, which holds UTF-8 only: another name would be written changed.
    if (!is_valid_utf8(s.name))
      throw error("tensor " + quote(s.name) + ": the name is not valid UTF-8, which a safetensors header cannot hold");
    tensor_info t;
    t.name = s.name;
    t.type = s.type;
    t.shape = s.shape;
    t.begin = offset;
    t.end = offset = checked_add(offset, s.nbytes(), "tensor " + quote(s.name) + ": offset");
    if (!first) json += ',';
    first = false;
    json::append_quoted(json, s.name);
    json += ":{\"dtype\":\"";
    json += dtype_name(s.type);
    json += "\",\"shape\":[";
    for (std::size_t i = 0; i < s.shape.size(); ++i) {
      if (i) json += ',';
      json += std::to_string(s.shape[i]);
    }
    json += "],\"data_offsets\":[" + std::to_string(t.begin) + ',' + std::to_string(t.end) + "]}";
    out.tensors.push_back(std::move(t));
  }
  json += '}';
  // Pad with spaces so the data section starts 8-byte aligned, as the Python writer does.
  json.append((8 - json.size() % 8) % 8, ' ');
  std::uint64_t n = json.size();
  out.header.resize(8);
  for (int i = 0; i < 8; ++i) out.header[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  out.header += json;
  out.file_size = checked_add(out.header.size(), offset, "safetensors file size");
  return out;
}

safetensors_writer::safetensors_writer(std::string final_path, const std::vector<tensor_spec>& specs,
                                       const std::map<std::string, std::string>& metadata)
    : layout_(layout_safetensors(specs, metadata)), file_(std::move(final_path), layout_.file_size) {
  written_ = std::make_unique<std::atomic<std::uint64_t>[]>(layout_.tensors.size());
  for (std::size_t i = 0; i < layout_.tensors.size(); ++i) written_[i] = 0;
  file_.write_at(0, layout_.header.data(), layout_.header.size());
}

safetensors_writer::~safetensors_writer() = default;

void safetensors_writer::write(std::size_t index, std::uint64_t offset, const void* data, std::uint64_t size) {
  const tensor_info& t = layout_.tensors.at(index);
  if (offset > t.nbytes() || size > t.nbytes() - offset)
    throw error(final_path() + ": internal: write past the end of tensor '" + t.name + "'");
  file_.write_at(layout_.header.size() + t.begin + offset, data, size);
  written_[index] += size;
}

void safetensors_writer::copy_from_file(std::size_t index, std::uint64_t offset, int src_fd, std::uint64_t src_offset,
                                        std::uint64_t size, const void* fallback) {
  const tensor_info& t = layout_.tensors.at(index);
  if (offset > t.nbytes() || size > t.nbytes() - offset)
    throw error(final_path() + ": internal: copy past the end of tensor '" + t.name + "'");
  std::uint64_t done = file_.copy_from(src_fd, src_offset, layout_.header.size() + t.begin + offset, size);
  std::uint64_t left = size - done;
  written_[index] += size - left;
  if (left) write(index, offset + (size - left), static_cast<const char*>(fallback) + (size - left), left);
}

void safetensors_writer::seal() {
  for (std::size_t i = 0; i < layout_.tensors.size(); ++i)
    if (written_[i] != layout_.tensors[i].nbytes())
      throw error(final_path() + ": internal: tensor '" + layout_.tensors[i].name + "' received " +
                  std::to_string(written_[i].load()) + " of " + std::to_string(layout_.tensors[i].nbytes()) + " bytes");
  file_.close();
}

void safetensors_writer::commit() {
  seal();
  file_.commit();
}

}  // namespace moereg
