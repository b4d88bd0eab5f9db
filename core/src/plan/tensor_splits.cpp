// SPDX-License-Identifier: Apache-2.0
#include "tensor_splits.h"

#include <cmath>

#include "moereg/base/error.h"
#include "moereg/base/printable.h"
#include "moereg/gguf/ggml_type.h"

namespace moereg::detail {

split_geometry resolve_split(const tensor_split& s, const json::value& config, const std::string& config_path) {
  auto count = [&](const config_value& v, const char* what) {
    const double x = required_value(v, config, config_path, 0, true);
    if (!(x >= 1 && x <= 2147483647.0) || std::floor(x) != x)
      throw error(config_path + ": " + v.describe() + " = " + std::to_string(x) + ", expected a positive integer (" + what +
                  " of split '" + s.canonical.text() + "' at " + s.at.str() + ")");
    return static_cast<std::int64_t>(x);
  };
  split_geometry g;
  g.heads = count(s.heads, "heads");
  for (const auto& p : s.parts) {
    g.offset.push_back(g.per_head);
    g.rows.push_back(count(p.rows, "rows per head"));
    g.per_head += g.rows.back();
  }
  return g;
}

std::optional<split_part_match> match_split_part(const layout_spec& layout, const std::string& stored) {
  for (std::size_t i = 0; i < layout.splits.size(); ++i)
    for (std::size_t k = 0; k < layout.splits[i].parts.size(); ++k)
      if (auto m = layout.splits[i].parts[k].key.match(stored)) return split_part_match{i, k, layout.splits[i].canonical.format(*m)};
  return std::nullopt;
}

const tensor_split* split_cutting(const layout_spec& layout, const std::string& canonical, captures* c) {
  for (const auto& s : layout.splits)
    if (auto m = s.canonical.match(canonical)) {
      if (c) *c = *m;
      return &s;
    }
  return nullptr;
}

std::optional<passthrough_tensor> join_split(const tensor_split& s, const split_geometry& g, const std::string& canonical,
                                             const std::vector<const checkpoint::entry*>& parts,
                                             const std::function<void(std::string)>& problem) {
  captures c = *s.canonical.match(canonical);
  const checkpoint::entry* first = nullptr;
  bool ok = true;
  std::int64_t cols = -1;
  for (std::size_t k = 0; k < parts.size(); ++k) {
    const split_part& part = s.parts[k];
    const checkpoint::entry* t = parts[k];
    if (!t) {
      std::string present;
      for (const auto* x : parts)
        if (x) present += (present.empty() ? "" : ", ") + printable(x->info->name);
      problem(printable(part.key.format(c)) + ": missing, but " + present + " holds part of " + quote(canonical) +
              " (split at " + s.at.str() + ")");
      ok = false;
      continue;
    }
    const tensor_info& info = *t->info;
    if (info.ggml_blocks) {
      // The per-head views cross ggml blocks (transposed parts), and a joined tensor has one type.
      problem(printable(info.name) + ": " + storage_type_name(info) + " blocks; a part of " + quote(canonical) +
              " (split at " + s.at.str() + ") is read only as F32, F16 or BF16");
      ok = false;
      continue;
    }
    const auto& sh = info.shape;
    const std::int64_t c_here = sh.size() == 3 ? (part.transpose ? sh[1] : sh[2]) : -1;
    const std::vector<std::int64_t> want = part.transpose ? std::vector<std::int64_t>{g.heads, c_here, g.rows[k]}
                                                          : std::vector<std::int64_t>{g.heads, g.rows[k], c_here};
    if (sh.size() != 3 || sh != want || (cols >= 0 && c_here != cols)) {
      problem(printable(info.name) + ": shape " + shape_string(sh) + ", expected [" + std::to_string(g.heads) + ", " +
              (part.transpose ? (cols >= 0 ? std::to_string(cols) : "cols") + ", " + std::to_string(g.rows[k])
                              : std::to_string(g.rows[k]) + ", " + (cols >= 0 ? std::to_string(cols) : "cols")) +
              "] (heads from " + s.heads.describe() + ", rows from " + part.rows.describe() + (part.transpose ? ", transposed" : "") +
              "; split of " + quote(canonical) + " at " + s.at.str() + ")");
      ok = false;
      continue;
    }
    cols = c_here;
    if (first && info.type != first->info->type) {
      problem(printable(info.name) + ": " + std::string(dtype_name(info.type)) + ", but " + printable(first->info->name) +
              " is " + std::string(dtype_name(first->info->type)) + "; the parts of " + quote(canonical) + " must share a dtype");
      ok = false;
      continue;
    }
    if (!first) first = t;
  }
  if (!ok) return std::nullopt;
  passthrough_tensor p{canonical, first, {}};
  p.joined_shape = {g.heads * g.per_head, cols};
  for (std::int64_t h = 0; h < g.heads; ++h) {
    std::vector<matrix_view> views;
    for (std::size_t k = 0; k < parts.size(); ++k) {
      matrix_view v;
      v.source = parts[k];
      v.type = parts[k]->info->type;
      v.rows = g.rows[k];
      v.cols = cols;
      v.offset = static_cast<std::uint64_t>(h * g.rows[k] * cols);
      // A transposed part holds each head as [cols, rows]: row r of the view is its column r.
      v.row_stride = s.parts[k].transpose ? 1 : cols;
      v.col_stride = s.parts[k].transpose ? g.rows[k] : 1;
      views.push_back(v);
    }
    p.joined.push_back(std::move(views));
  }
  return p;
}

bool takes_split_path(const layout_spec& target, const passthrough_tensor& p) {
  return !p.joined.empty() || split_cutting(target, p.canonical, nullptr) != nullptr;
}

namespace {

// Rows [first, first + rows) of head h of the canonical tensor, as a view into where they lie.
std::vector<matrix_view> canonical_rows(const passthrough_tensor& p, std::int64_t per_head, std::int64_t h, std::int64_t first,
                                        std::int64_t rows) {
  if (p.joined.empty()) {
    const std::int64_t cols = p.source->info->shape.back();
    matrix_view v{p.source, static_cast<std::uint64_t>((h * per_head + first) * cols), rows, cols, cols, 1, p.source->info->type};
    return {v};
  }
  // Joined: the parts of the source that cover those rows (the same cut gives one whole part).
  std::vector<matrix_view> out;
  std::int64_t at = 0;
  for (const matrix_view& part : p.joined[static_cast<std::size_t>(h)]) {
    const std::int64_t lo = std::max(first, at), hi = std::min(first + rows, at + part.rows);
    if (lo < hi) {
      matrix_view v = part;
      v.offset += static_cast<std::uint64_t>((lo - at) * part.row_stride);
      v.rows = hi - lo;
      out.push_back(v);
    }
    at += part.rows;
  }
  return out;
}

}  // namespace

std::vector<output_tensor> split_outputs(const decoded_checkpoint& src, const layout_spec& target, const passthrough_tensor& p,
                                         std::optional<dtype> decode_to) {
  const std::vector<std::int64_t> shape = p.shape();
  if (shape.size() != 2 || p.source->info->ggml_blocks)
    throw error(quote(p.canonical) + ": shape " + shape_string(shape) + " " + storage_type_name(*p.source->info) +
                "; a tensor cut per head must be a [rows, cols] matrix of F32, F16 or BF16");
  const std::int64_t cols = shape[1];
  // Assembled from views, one slot per head.
  auto base = [&](output_tensor& out, std::string name) -> assembled_output& {
    out.spec.name = std::move(name);
    out.spec.type = decode_to ? *decode_to : p.source->info->type;
    assembled_output& o = out.body.emplace<assembled_output>();
    o.decoding = decode_to ? piece_decoding::ggml : piece_decoding::copy;
    o.cols = cols;
    return o;
  };
  captures c;
  const tensor_split* cut = split_cutting(target, p.canonical, &c);
  if (!cut) {  // joined from parts, written whole
    output_tensor out;
    assembled_output& o = base(out, from_canonical(target, p.canonical));
    o.rows_total = shape[0] / static_cast<std::int64_t>(p.joined.size());
    o.slots = p.joined;
    out.spec.shape = shape;
    std::string from;
    for (const auto& v : p.joined.front()) from += (from.empty() ? "" : " + ") + v.source->info->name;
    out.origin = "join per head " + from;
    return {out};
  }
  const split_geometry g = resolve_split(*cut, src.ckpt->config(), src.dims.config_path.empty() ? src.ckpt->path() : src.dims.config_path);
  if (shape[0] != g.heads * g.per_head)
    throw error(quote(p.canonical) + ": shape " + shape_string(shape) + ", but layout '" + target.name + "' cuts it into " +
                std::to_string(g.heads) + " heads of " + std::to_string(g.per_head) + " rows (heads from " + cut->heads.describe() +
                "; split at " + cut->at.str() + ")");
  std::vector<output_tensor> out;
  for (std::size_t k = 0; k < cut->parts.size(); ++k) {
    const split_part& part = cut->parts[k];
    output_tensor made;
    assembled_output& o = base(made, part.key.format(c));
    o.rows_total = g.rows[k];
    o.transpose = part.transpose;
    for (std::int64_t h = 0; h < g.heads; ++h) o.slots.push_back(canonical_rows(p, g.per_head, h, g.offset[k], g.rows[k]));
    made.spec.shape = part.transpose ? std::vector<std::int64_t>{g.heads, cols, g.rows[k]} : std::vector<std::int64_t>{g.heads, g.rows[k], cols};
    made.origin = "rows " + std::to_string(g.offset[k]) + ".." + std::to_string(g.offset[k] + g.rows[k] - 1) + " of each of " +
               std::to_string(g.heads) + " heads of " + (p.joined.empty() ? p.source->info->name : "the joined " + p.canonical) +
               (part.transpose ? ", transposed" : "");
    out.push_back(std::move(made));
  }
  return out;
}

}  // namespace moereg::detail
