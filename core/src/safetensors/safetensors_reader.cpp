// SPDX-License-Identifier: Apache-2.0
#include "moereg/safetensors/safetensors_reader.h"

#include <algorithm>
#include <cstring>

#include "moereg/base/checked.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/base/printable.h"

namespace moereg {

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

namespace {

struct header_checker {
  std::string where;

  [[noreturn]] void fail(const std::string& what) const { throw error(where + ": header: " + what); }
  [[noreturn]] void fail_tensor(const std::string& name, const std::string& what) const {
    throw error(where + ": header: tensor " + quote(name) + ": " + what);
  }

  std::uint64_t exact_uint(const json::value& v, const std::string& name, const char* field) const {
    if (!v.is_integer() || v.as_int() < 0)
      fail_tensor(name, std::string(field) + " must hold non-negative integers, found " +
                            (v.is_integer() ? std::to_string(v.as_int()) : json::kind_name(v.kind())));
    return static_cast<std::uint64_t>(v.as_int());
  }

  tensor_info tensor(const std::string& name, const json::value& v) const {
    if (!v.is_object()) fail_tensor(name, std::string("expected an object, found ") + json::kind_name(v.kind()));
    tensor_info t;
    t.name = name;
    const json::value* dt = v.find("dtype");
    const json::value* sh = v.find("shape");
    const json::value* off = v.find("data_offsets");
    if (!dt || !sh || !off) fail_tensor(name, "expected the fields dtype, shape and data_offsets");
    if (!dt->is_string()) fail_tensor(name, "dtype must be a string");
    auto parsed = parse_dtype(dt->as_string());
    if (!parsed)
      fail_tensor(name, "unknown dtype " + quote(dt->as_string()) + ", expected one of " + std::string(known_dtype_names()));
    t.type = *parsed;
    if (!sh->is_array()) fail_tensor(name, "shape must be an array");
    if (sh->as_array().size() > MOEREG_MAX_RANK)
      fail_tensor(name, "rank " + std::to_string(sh->as_array().size()) + " exceeds " + std::to_string(MOEREG_MAX_RANK));
    std::uint64_t numel = 1;
    for (const auto& d : sh->as_array()) {
      std::uint64_t dim = exact_uint(d, name, "shape");
      if (dim > static_cast<std::uint64_t>(INT64_MAX)) fail_tensor(name, "shape dimension too large");
      t.shape.push_back(static_cast<std::int64_t>(dim));
      numel = checked_mul(numel, dim, where + ": header: tensor " + quote(name) + ": element count");
    }
    if (!off->is_array() || off->as_array().size() != 2) fail_tensor(name, "data_offsets must be [begin, end]");
    t.begin = exact_uint(off->as_array()[0], name, "data_offsets");
    t.end = exact_uint(off->as_array()[1], name, "data_offsets");
    if (t.end < t.begin)
      fail_tensor(name, "data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "] are reversed");
    std::uint64_t expected = checked_mul(numel, dtype_size(t.type), where + ": header: tensor " + quote(name) + ": byte size");
    if (t.end - t.begin != expected)
      fail_tensor(name, "data_offsets span " + std::to_string(t.end - t.begin) + " bytes, expected " +
                            std::to_string(expected) + " for " + std::string(dtype_name(t.type)) + " " + shape_string(t.shape));
    return t;
  }
};

}  // namespace

safetensors_header parse_safetensors_header(const std::byte* bytes, std::uint64_t available, std::uint64_t file_size,
                                            std::string_view where_view) {
  header_checker c{std::string(where_view)};
  if (file_size < 8 || available < 8)
    c.fail("file is " + std::to_string(file_size) + " bytes, expected at least 8 (the header length)");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<std::uint8_t>(bytes[i]);
  if (n > safetensors_max_header)
    c.fail("declared length " + std::to_string(n) + " exceeds the limit of " + std::to_string(safetensors_max_header) + " bytes");
  std::uint64_t data_start = checked_add(8, n, c.where + ": header: length");
  if (data_start > file_size)
    c.fail("declared length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(file_size) + " bytes)");
  if (data_start > available) c.fail("header is not fully readable");
  std::string_view text(reinterpret_cast<const char*>(bytes + 8), n);
  if (text.empty() || text.front() != '{') c.fail("expected a JSON object starting with '{'");

  json::value doc;
  try {
    doc = json::parse(text, c.where + ": header");
  } catch (const error& e) {
    throw;
  }
  if (!doc.is_object()) c.fail("expected a JSON object");

  safetensors_header h;
  h.header_size = n;
  h.data_size = file_size - data_start;
  h.tensors.reserve(doc.as_object().size());
  for (const auto& [key, v] : doc.as_object()) {
    if (key == "__metadata__") {
      if (!v.is_object()) c.fail("__metadata__ must be an object of strings");
      for (const auto& [mk, mv] : v.as_object()) {
        if (!mv.is_string()) c.fail("__metadata__ value of " + quote(mk) + " must be a string, found " + json::kind_name(mv.kind()));
        h.metadata.emplace(mk, mv.as_string());
      }
      continue;
    }
    h.tensors.push_back(c.tensor(key, v));
  }

  // Ranges in offset order must start at 0, touch end to start, and end at the data size.
  std::vector<std::size_t> order(h.tensors.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const auto &ta = h.tensors[a], &tb = h.tensors[b];
    return ta.begin != tb.begin ? ta.begin < tb.begin : ta.end < tb.end;
  });
  std::uint64_t expect = 0;
  for (std::size_t i : order) {
    const auto& t = h.tensors[i];
    if (t.begin != expect)
      c.fail_tensor(t.name, "data_offsets begin at " + std::to_string(t.begin) + ", expected " + std::to_string(expect) +
                                (t.begin < expect ? " (overlaps the previous tensor)" : " (gap after the previous tensor)"));
    expect = t.end;
  }
  if (expect != h.data_size)
    c.fail("tensor data covers " + std::to_string(expect) + " bytes, but the data section holds " +
           std::to_string(h.data_size) + " (file " + std::to_string(file_size) + " bytes, header " + std::to_string(n) + ")");
  return h;
}

safetensors_file::safetensors_file(const std::string& path) : file_(path) {
  header_ = parse_safetensors_header(file_.data(), file_.size(), file_.size(), path);
  index_.reserve(header_.tensors.size());
  for (std::size_t i = 0; i < header_.tensors.size(); ++i) index_.emplace(header_.tensors[i].name, i);
}

const tensor_info* safetensors_file::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

}  // namespace moereg
