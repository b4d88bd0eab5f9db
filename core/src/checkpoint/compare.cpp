// SPDX-License-Identifier: Apache-2.0
#include "moereg/checkpoint/compare.h"

#include "moereg/base/mapped_file.h"
#include "moereg/gguf/ggml_type.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <unordered_map>

namespace moereg {

namespace {

std::string first_difference(const tensor_ref& a, const tensor_ref& b) {
  std::size_t esize = dtype_size(a.type);
  std::uint64_t n = a.nbytes;
  // memcmp in large chunks first: the common case is equal data, and it is memory-bound.
  std::uint64_t at = 0;
  constexpr std::uint64_t chunk = 16 << 20;
  while (at < n) {
    std::uint64_t len = std::min(chunk, n - at);
    if (a.mapped) prefetch_range(a.data + at, len);
    if (b.mapped) prefetch_range(b.data + at, len);
    bool same = std::memcmp(a.data + at, b.data + at, len) == 0;
    // Only file-backed pages: releasing heap pages would zero them.
    if (a.mapped) release_range(a.data + at, len);
    if (b.mapped) release_range(b.data + at, len);
    if (!same) break;
    at += len;
  }
  if (at >= n) return {};
  while (a.data[at] == b.data[at]) ++at;
  std::uint64_t elem = at / esize;
  std::ostringstream ss;
  ss.precision(9);
  ss << "first difference at element " << elem << ": " << element_as_double(a.type, a.data, elem) << " vs "
     << element_as_double(b.type, b.data, elem);
  return ss.str();
}

}  // namespace

comparison compare_tensors(const std::vector<tensor_ref>& a, const std::vector<tensor_ref>& b) {
  comparison c;
  std::unordered_map<std::string_view, const tensor_ref*> in_b;
  in_b.reserve(b.size());
  for (const auto& t : b) in_b.emplace(t.name, &t);
  std::unordered_map<std::string_view, bool> in_a;
  in_a.reserve(a.size());
  for (const auto& ta : a) {
    in_a.emplace(ta.name, true);
    auto it = in_b.find(ta.name);
    if (it == in_b.end()) {
      c.differences.push_back({ta.name, "missing_in_b", "present only in A"});
      continue;
    }
    const tensor_ref& tb = *it->second;
    ++c.compared;
    if (ta.type != tb.type || ta.ggml_blocks != tb.ggml_blocks) {
      auto name = [](const tensor_ref& t) {
        tensor_info i;
        i.type = t.type;
        i.ggml_blocks = t.ggml_blocks;
        return storage_type_name(i);
      };
      c.differences.push_back({ta.name, "dtype", name(ta) + " vs " + name(tb)});
      continue;
    }
    if (ta.shape != tb.shape) {
      c.differences.push_back({ta.name, "shape", shape_string(ta.shape) + " vs " + shape_string(tb.shape)});
      continue;
    }
    c.bytes_compared += ta.nbytes;
    std::string diff = first_difference(ta, tb);
    if (!diff.empty()) c.differences.push_back({ta.name, "bytes", diff});
  }
  for (const auto& tb : b)
    if (!in_a.count(tb.name)) c.differences.push_back({tb.name, "missing_in_a", "present only in B"});
  std::stable_sort(c.differences.begin(), c.differences.end(),
                   [](const tensor_difference& x, const tensor_difference& y) { return x.name < y.name; });
  return c;
}

static std::vector<tensor_ref> refs_of(const checkpoint& c) {
  std::vector<tensor_ref> out;
  out.reserve(c.tensors().size());
  for (const auto& e : c.tensors()) out.push_back({e.info->name, e.info->type, e.info->shape, e.data(), e.info->nbytes(), true,
                   e.info->ggml_blocks});
  return out;
}

comparison compare_checkpoints(const checkpoint& a, const checkpoint& b) { return compare_tensors(refs_of(a), refs_of(b)); }

json::value comparison_to_json(const comparison& c) {
  json::array diffs;
  for (const auto& d : c.differences)
    diffs.emplace_back(json::value(json::object{
        {"name", json::value(d.name)}, {"kind", json::value(d.kind)}, {"detail", json::value(d.detail)}}));
  return json::value(json::object{{"equal", json::value(c.equal())},
                                  {"compared", json::value(c.compared)},
                                  {"bytes_compared", json::value(c.bytes_compared)},
                                  {"differences", json::value(std::move(diffs))}});
}

}  // namespace moereg
