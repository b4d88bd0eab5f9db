// SPDX-License-Identifier: Apache-2.0
#include "moereg/gguf/gguf_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <unordered_set>

#include "moereg/base/checked.h"
#include "moereg/base/error.h"

namespace moereg {

namespace {

template <class T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<std::uint64_t>(out, s.size());
  out += s;
}

void put_scalar(std::string& out, const gguf_value& v) {
  switch (v.type()) {
    case gguf_type::u8: put<std::uint8_t>(out, static_cast<std::uint8_t>(v.as_u64())); break;
    case gguf_type::u16: put<std::uint16_t>(out, static_cast<std::uint16_t>(v.as_u64())); break;
    case gguf_type::u32: put<std::uint32_t>(out, static_cast<std::uint32_t>(v.as_u64())); break;
    case gguf_type::u64: put<std::uint64_t>(out, v.as_u64()); break;
    case gguf_type::i8: put<std::int8_t>(out, static_cast<std::int8_t>(v.as_i64())); break;
    case gguf_type::i16: put<std::int16_t>(out, static_cast<std::int16_t>(v.as_i64())); break;
    case gguf_type::i32: put<std::int32_t>(out, static_cast<std::int32_t>(v.as_i64())); break;
    case gguf_type::i64: put<std::int64_t>(out, v.as_i64()); break;
    case gguf_type::f32: put<std::uint32_t>(out, static_cast<std::uint32_t>(v.as_u64())); break;
    case gguf_type::f64: put<std::uint64_t>(out, v.as_u64()); break;
    case gguf_type::boolean: put<std::uint8_t>(out, v.as_bool() ? 1 : 0); break;
    case gguf_type::string: put_string(out, v.as_string()); break;
    case gguf_type::array: break;  // gguf_value::array refuses nesting
  }
}

void put_value(std::string& out, const gguf_value& v) {
  put<std::uint32_t>(out, static_cast<std::uint32_t>(v.type()));
  if (v.type() != gguf_type::array) return put_scalar(out, v);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(v.element_type()));
  put<std::uint64_t>(out, v.array_size());
  out += v.encoded_items();
}

std::uint64_t align_up(std::uint64_t v, std::uint32_t a, const std::string& what) {
  return checked_add(v, (a - v % a) % a, what);
}

}  // namespace

gguf_layout layout_gguf(const gguf_metadata& metadata, const std::vector<gguf_tensor_spec>& specs) {
  gguf_layout out;
  std::string& h = out.header;
  h.append("GGUF", 4);
  put<std::uint32_t>(h, 3);
  put<std::uint64_t>(h, specs.size());
  put<std::uint64_t>(h, metadata.size());
  std::unordered_set<std::string> keys;
  for (const auto& [key, v] : metadata) {
    if (key.empty() || key.size() > gguf_max_key_length)
      throw error("gguf writer: key '" + key + "': expected 1 to " + std::to_string(gguf_max_key_length) + " bytes");
    if (!keys.insert(key).second) throw error("gguf writer: key '" + key + "' given twice");
    if (key == "general.alignment") {
      std::uint64_t a = v.as_u64();
      if (v.type() != gguf_type::u32 || a == 0 || (a & (a - 1)))
        throw error("gguf writer: key 'general.alignment': expected a UINT32 power of two");
      out.alignment = static_cast<std::uint32_t>(a);
    }
    put_string(h, key);
    put_value(h, v);
  }

  std::unordered_set<std::string> names;
  std::uint64_t offset = 0;
  for (const auto& s : specs) {
    std::string ctx = "gguf writer: tensor '" + s.name + "'";
    if (s.name.empty() || s.name.size() > gguf_max_key_length)
      throw error(ctx + ": name must be 1 to " + std::to_string(gguf_max_key_length) + " bytes");
    if (!names.insert(s.name).second) throw error(ctx + " given twice");
    if (s.shape.empty() || s.shape.size() > gguf_max_dims)
      throw error(ctx + ": rank " + std::to_string(s.shape.size()) + ", expected 1 to " + std::to_string(gguf_max_dims) +
                  " (GGUF's limit)");
    const ggml_type_traits& tr = ggml_traits(s.type);
    gguf_tensor t;
    t.name = s.name;
    t.type = s.type;
    t.shape = s.shape;
    std::uint64_t numel = 1;
    for (auto it = s.shape.rbegin(); it != s.shape.rend(); ++it) {
      if (*it <= 0) throw error(ctx + ": shape " + shape_string(s.shape) + ", expected every dimension > 0");
      t.ne.push_back(static_cast<std::uint64_t>(*it));
      numel = checked_mul(numel, t.ne.back(), ctx + ": element count");
    }
    if (t.ne[0] % tr.block_size)
      throw error(ctx + ": innermost dimension " + std::to_string(t.ne[0]) + " is not a multiple of the " +
                  std::string(tr.name) + " block size " + std::to_string(tr.block_size));
    t.nbytes = checked_mul(numel / tr.block_size, tr.type_size, ctx + ": byte size");
    t.offset = offset;
    offset = align_up(checked_add(offset, t.nbytes, ctx + ": end"), out.alignment, ctx + ": end");
    put_string(h, t.name);
    put<std::uint32_t>(h, static_cast<std::uint32_t>(t.ne.size()));
    for (auto n : t.ne) put<std::uint64_t>(h, n);
    put<std::uint32_t>(h, static_cast<std::uint32_t>(t.type));
    put<std::uint64_t>(h, t.offset);
    out.tensors.push_back(std::move(t));
  }
  h.resize(align_up(h.size(), out.alignment, "gguf writer: header size"), '\0');
  out.file_size = checked_add(h.size(), offset, "gguf writer: file size");
  return out;
}

gguf_writer::gguf_writer(std::string final_path, const gguf_metadata& metadata, const std::vector<gguf_tensor_spec>& specs)
    : final_path_(final_path), layout_(layout_gguf(metadata, specs)), file_(std::move(final_path), layout_.file_size) {
  // The file is created at its full size, so the padding between tensors reads as zeros.
  written_ = std::make_unique<std::atomic<std::uint64_t>[]>(layout_.tensors.size());
  for (std::size_t i = 0; i < layout_.tensors.size(); ++i) written_[i] = 0;
  file_.write_at(0, layout_.header.data(), layout_.header.size());
}

gguf_writer::~gguf_writer() = default;

void gguf_writer::write(std::size_t index, std::uint64_t offset, const void* data, std::uint64_t size) {
  const gguf_tensor& t = layout_.tensors.at(index);
  if (offset > t.nbytes || size > t.nbytes - offset)
    throw error(final_path_ + ": internal: write past the end of tensor '" + t.name + "'");
  file_.write_at(layout_.header.size() + t.offset + offset, data, size);
  written_[index] += size;
}

void gguf_writer::copy_from_file(std::size_t index, std::uint64_t offset, int src_fd, std::uint64_t src_offset,
                                 std::uint64_t size, const void* fallback) {
  const gguf_tensor& t = layout_.tensors.at(index);
  if (offset > t.nbytes || size > t.nbytes - offset)
    throw error(final_path_ + ": internal: copy past the end of tensor '" + t.name + "'");
  std::uint64_t done = file_.copy_from(src_fd, src_offset, layout_.header.size() + t.offset + offset, size);
  written_[index] += done;
  if (done < size) write(index, offset + done, static_cast<const char*>(fallback) + done, size - done);
}

void gguf_writer::seal() {
  for (std::size_t i = 0; i < layout_.tensors.size(); ++i)
    if (written_[i] != layout_.tensors[i].nbytes)
      throw error(final_path_ + ": internal: tensor '" + layout_.tensors[i].name + "' received " +
                  std::to_string(written_[i].load()) + " of " + std::to_string(layout_.tensors[i].nbytes) + " bytes");
  file_.close();
}

void gguf_writer::commit() {
  seal();
  file_.commit();
}

}  // namespace moereg
