// SPDX-License-Identifier: Apache-2.0
#include <cmath>
#include <cstring>

#include <deque>
#include <vector>

#include "moereg/base/error.h"
#include "moereg/base/mapped_file.h"
#include "moereg/plan/compare_decoded.h"

namespace moereg {

namespace {

// First (row, col) where two views differ, or false.
bool first_difference(const matrix_view& a, const matrix_view& b, std::int64_t& r_out, std::int64_t& c_out) {
  std::size_t es = a.element_size();
  if (a.contiguous() && b.contiguous()) {
    prefetch_range(a.at(0, 0), a.nbytes());
    prefetch_range(b.at(0, 0), b.nbytes());
    bool same = std::memcmp(a.at(0, 0), b.at(0, 0), a.nbytes()) == 0;
    release_range(a.at(0, 0), a.nbytes());
    release_range(b.at(0, 0), b.nbytes());
    if (same) return false;
  }
  for (std::int64_t r = 0; r < a.rows; ++r)
    for (std::int64_t c = 0; c < a.cols; ++c)
      if (std::memcmp(a.at(r, c), b.at(r, c), es) != 0) {
        r_out = r;
        c_out = c;
        return true;
      }
  return false;
}

}  // namespace

comparison compare_decoded(const decoded_checkpoint& a, const decoded_checkpoint& b, const hook_runner& hooks_a,
                           const hook_runner& hooks_b) {
  comparison c;
  if (a.expert_dtype != b.expert_dtype)
    c.differences.push_back({"experts", "dtype", std::string(dtype_name(a.expert_dtype)) + " vs " + std::string(dtype_name(b.expert_dtype))});
  for (const auto& [layer, ea] : a.experts) {
    auto it = b.experts.find(layer);
    std::string lname = "layer " + std::to_string(layer) + " experts";
    if (it == b.experts.end()) {
      c.differences.push_back({lname, "missing_in_b", "no experts in B"});
      continue;
    }
    const auto& eb = it->second;
    if (ea.size() != eb.size()) {
      c.differences.push_back({lname, "shape", "E=" + std::to_string(ea.size()) + " vs E=" + std::to_string(eb.size())});
      continue;
    }
    for (std::size_t e = 0; e < ea.size(); ++e)
      for (int p = 0; p < 3; ++p) {
        const matrix_view &va = ea[e][static_cast<std::size_t>(p)], &vb = eb[e][static_cast<std::size_t>(p)];
        std::string name = "layer " + std::to_string(layer) + " expert " + std::to_string(e) + " " + piece_name(static_cast<piece>(p));
        ++c.compared;
        if (va.rows != vb.rows || va.cols != vb.cols) {
          c.differences.push_back({name, "shape", std::to_string(va.rows) + "x" + std::to_string(va.cols) + " vs " +
                                                      std::to_string(vb.rows) + "x" + std::to_string(vb.cols)});
          continue;
        }
        c.bytes_compared += va.nbytes();
        std::int64_t r = 0, col = 0;
        if (a.expert_dtype == b.expert_dtype && first_difference(va, vb, r, col))
          c.differences.push_back({name, "bytes", "first difference at [" + std::to_string(r) + ", " + std::to_string(col) +
                                                      "] (" + va.source->info->name + " vs " + vb.source->info->name + ")"});
        // Quantized pieces are equal only with equal scales.
        auto sa = a.expert_scales.find(layer), sb = b.expert_scales.find(layer);
        if (sa == a.expert_scales.end() && sb == b.expert_scales.end()) continue;
        if (sa == a.expert_scales.end() || sb == b.expert_scales.end()) {
          c.differences.push_back({name, "scales", std::string("scales only in ") + (sa == a.expert_scales.end() ? "B" : "A")});
          continue;
        }
        const matrix_view &xa = sa->second[e][static_cast<std::size_t>(p)].scale, &xb = sb->second[e][static_cast<std::size_t>(p)].scale;
        if (xa.rows != xb.rows || xa.cols != xb.cols || xa.type != xb.type) {
          c.differences.push_back({name + " scales", "shape", std::to_string(xa.rows) + "x" + std::to_string(xa.cols) + " " +
                                                                  std::string(dtype_name(xa.type)) + " vs " + std::to_string(xb.rows) +
                                                                  "x" + std::to_string(xb.cols) + " " + std::string(dtype_name(xb.type))});
          continue;
        }
        c.bytes_compared += xa.nbytes();
        if (first_difference(xa, xb, r, col))
          c.differences.push_back({name + " scales", "bytes", "first difference at scale [" + std::to_string(r) + ", " +
                                                                  std::to_string(col) + "] (" + xa.source->info->name + " vs " +
                                                                  xb.source->info->name + ")"});
      }
  }
  for (const auto& [layer, _] : b.experts)
    if (!a.experts.count(layer)) c.differences.push_back({"layer " + std::to_string(layer) + " experts", "missing_in_a", "no experts in A"});
  std::vector<tensor_ref> ra, rb;
  std::deque<std::vector<std::byte>> decoded_bytes;  // stable addresses for hook outputs
  auto add = [&](std::vector<tensor_ref>& out, const passthrough_tensor& o, const hook_runner& hooks) {
    if (!o.joined.empty()) {  // stored cut per head (a layout's `splits`): compared as the tensor it was cut from
      const std::size_t es = dtype_size(o.source->info->type);
      std::vector<std::byte>& bytes = decoded_bytes.emplace_back();
      bytes.reserve(static_cast<std::size_t>(o.joined_shape[0] * o.joined_shape[1]) * es);
      for (const auto& head : o.joined)
        for (const matrix_view& v : head)
          for (std::int64_t r = 0; r < v.rows; ++r)
            for (std::int64_t col = 0; col < v.cols; ++col) bytes.insert(bytes.end(), v.at(r, col), v.at(r, col) + es);
      out.push_back({o.canonical, o.source->info->type, o.joined_shape, bytes.data(), bytes.size(), false});
      return;
    }
    const std::byte* data = o.source->data();
    bool mapped = true;
    if (!o.decode_hook.empty()) {
      mapped = false;
      if (!hooks) throw error("comparing '" + o.canonical + "' needs hook '" + o.decode_hook + "'");
      decoded_bytes.emplace_back(o.source->info->nbytes());
      tensor_spec spec{o.canonical, o.source->info->type, o.shape()};
      hooks(o.decode_hook, 0, o.source->info->name, spec, data, decoded_bytes.back().data());
      data = decoded_bytes.back().data();
    }
    if (o.narrow_to) {  // a .gguf's F32 widening of a BF16 tensor: compared as the BF16 it was
      std::size_t n = o.source->info->numel();
      decoded_bytes.emplace_back(n * 2);
      for (std::size_t i = 0; i < n; ++i) {
        float f;
        std::memcpy(&f, data + 4 * i, 4);
        std::uint16_t h = f32_to_bf16(f);
        float back = bf16_to_f32(h);
        if (std::memcmp(&back, &f, 4) != 0 && !(std::isnan(f) && std::isnan(back)))
          throw error("tensor '" + o.source->info->name + "': F32 value " + std::to_string(f) + " at element " +
                      std::to_string(i) + " is not exactly representable in BF16 (the model's dtype); refusing to round");
        std::memcpy(decoded_bytes.back().data() + 2 * i, &h, 2);
      }
      out.push_back({o.canonical, dtype::BF16, o.shape(), decoded_bytes.back().data(), n * 2, false});
      return;
    }
    out.push_back({o.canonical, o.source->info->type, o.shape(), data, o.source->info->nbytes(), mapped});
  };
  for (const auto& o : a.others) add(ra, o, hooks_a);
  for (const auto& o : b.others) add(rb, o, hooks_b);
  comparison rest = compare_tensors(ra, rb);
  c.compared += rest.compared;
  c.bytes_compared += rest.bytes_compared;
  c.differences.insert(c.differences.end(), rest.differences.begin(), rest.differences.end());
  return c;
}

}  // namespace moereg
