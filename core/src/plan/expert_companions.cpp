// SPDX-License-Identifier: Apache-2.0
#include "expert_companions.h"

#include <cstring>
#include <tuple>

#include "moereg/base/error.h"
#include "moereg/quant/gptq_int4.h"

namespace moereg::detail {

namespace {

std::string str(std::int64_t v) { return std::to_string(v); }

key_template companion_key(const std::string& naming, const expert_entry& e) {
  return key_template(apply_naming(naming, e.key.text()), "quantization naming of entry '" + e.name + "'");
}

int expert_of(const expert_entry& e, const captures& m) { return e.stacked ? -1 : std::stoi(m.at("expert")); }

bool scale_dtype_fits(const quant_format& q, dtype t) {
  switch (q.scheme) {
    case quant_scheme::mxfp4: return t == dtype::F8_E8M0 || t == dtype::U8;
    default: return t == dtype::F32 || t == dtype::BF16 || t == dtype::F16;
  }
}

std::int32_t read_i32(const std::byte* p, std::size_t i) {
  std::int32_t v;
  std::memcpy(&v, p + 4 * i, 4);
  return v;
}

std::int64_t read_int(const checkpoint::entry& t, std::size_t i) {
  if (t.info->type == dtype::I64) {
    std::int64_t v;
    std::memcpy(&v, t.data() + 8 * i, 8);
    return v;
  }
  return read_i32(t.data(), i);
}

}  // namespace

quant_format checkpoint_quant_format(const checkpoint& ckpt, const family_spec& spec, const layout_spec& layout,
                                     const model_dims& dims) {
  const std::string where = ckpt.config_path().empty() ? ckpt.path() : ckpt.config_path();
  quant_format q = read_quant_format(spec, ckpt.config(), where);
  if (q.quantized() || dims.moe_layers.empty() || layout.experts.empty()) return q;
  captures c{{"layer", std::to_string(dims.moe_layers.front())}, {"expert", "0"}};
  const checkpoint::entry* t = ckpt.find(layout.experts.front().key.format(c));
  if (t && t->info->type == dtype::F8_E4M3) return implicit_fp8_format(spec);
  return q;
}

entry_companions companion_keys(const expert_entry& e, const quant_format& q) {
  entry_companions c;
  for (const auto& s : q.names.scale) c.scale.push_back(companion_key(s, e));
  if (q.scheme == quant_scheme::gptq_int4 || q.scheme == quant_scheme::pack_int4) {
    if (!q.names.g_idx.empty()) c.g_idx = companion_key(q.names.g_idx, e);
    if (!q.names.zeros.empty()) c.zeros = companion_key(q.names.zeros, e);
    if (!q.names.shape.empty()) c.shape = companion_key(q.names.shape, e);
  }
  return c;
}

bool claim_companion(entry_companions& c, const expert_entry& e, const checkpoint::entry& t) {
  const std::string& name = t.info->name;
  for (std::size_t j = 0; j < c.scale.size(); ++j)
    if (auto m = c.scale[j].match(name)) {
      c.scales[std::stoi(m->at("layer"))][expert_of(e, *m)] = {&t, j};
      return true;
    }
  auto other = [&](const key_template& k, std::map<int, std::map<int, const checkpoint::entry*>>& into) {
    if (k.empty()) return false;
    auto m = k.match(name);
    if (!m) return false;
    into[std::stoi(m->at("layer"))][expert_of(e, *m)] = &t;
    return true;
  };
  return other(c.g_idx, c.g_idx_found) || other(c.zeros, c.zeros_found) || other(c.shape, c.shape_found);
}

void check_expert_dtype(const quant_format& q, dtype t, const std::string& config_where, const problem_sink& problem) {
  bool ok = false;
  std::string want;
  switch (q.scheme) {
    case quant_scheme::none: return;
    case quant_scheme::fp8: ok = t == dtype::F8_E4M3, want = "F8_E4M3"; break;
    case quant_scheme::mxfp4: ok = t == dtype::U8 || t == dtype::I8, want = "U8 or I8 (two e2m1 values per byte)"; break;
    case quant_scheme::gptq_int4:
    case quant_scheme::pack_int4: ok = t == dtype::I32, want = "I32 (eight int4 values per element)"; break;
  }
  if (!ok)
    problem("expert weights are " + std::string(dtype_name(t)) + ", but " + config_where + " says quantization " +
            q.describe() + ", whose weights are " + want);
}

void link_quantized_passthrough(const checkpoint& ckpt, const quant_format& q, passthrough_tensor& p) {
  const std::string& name = p.source->info->name;
  auto companion = [&](const std::string& naming, quant_role role) {
    if (naming.empty()) return false;
    auto key = unapply_naming(naming, name);
    if (!key) return false;
    std::string data = apply_naming(q.names.weight, *key);
    if (data == name || !ckpt.find(data)) return false;
    p.role = role;
    p.quant_naming = naming;
    return true;
  };
  for (const auto& s : q.names.scale)
    if (companion(s, quant_role::scale)) return;
  if (companion(q.names.g_idx, quant_role::g_idx) || companion(q.names.zeros, quant_role::zeros) ||
      companion(q.names.shape, quant_role::shape))
    return;
  auto key = unapply_naming(q.names.weight, name);
  if (!key) return;
  for (const auto& s : q.names.scale) {
    std::string scale = apply_naming(s, *key);
    if (scale == name) continue;
    if (const checkpoint::entry* t = ckpt.find(scale)) {
      p.role = quant_role::data;
      p.quant_naming = q.names.weight;
      p.scale = t;
      return;
    }
  }
}

namespace {

// What the companion checks of one stored expert tensor share.
struct companion_site {
  decoded_checkpoint& out;
  const entry_companions& c;
  const expert_entry& e;
  const entry_geometry& g;
  int layer, expert;
  const std::string& data_name;
  const problem_sink& problem;

  const checkpoint::entry* find(const std::map<int, std::map<int, const checkpoint::entry*>>& m) const {
    auto l = m.find(layer);
    if (l == m.end()) return nullptr;
    auto it = l->second.find(e.stacked ? -1 : expert);
    return it == l->second.end() ? nullptr : it->second;
  }
  std::vector<std::int64_t> stacked(std::vector<std::int64_t> shape) const {
    if (e.stacked) shape.insert(shape.begin(), out.dims.E);
    return shape;
  }
};

// The scale tensor of the site, checked for dtype and for agreeing with the other experts'.
const checkpoint::entry* scale_tensor(const companion_site& s, bool& scales_seen) {
  const quant_format& q = s.out.quant;
  const checkpoint::entry* t = nullptr;
  std::size_t naming = 0;
  if (auto l = s.c.scales.find(s.layer); l != s.c.scales.end())
    if (auto it = l->second.find(s.e.stacked ? -1 : s.expert); it != l->second.end()) std::tie(t, naming) = it->second;
  if (!t) {
    captures names{{"layer", std::to_string(s.layer)}, {"expert", std::to_string(s.expert)}};
    std::string expect;
    for (const auto& k : s.c.scale) expect += (expect.empty() ? "" : " or ") + k.format(names);
    s.problem(s.data_name + ": its scale tensor is missing: expected " + expect + " (" + q.describe() + ")");
    return nullptr;
  }
  const std::string& sname = t->info->name;
  if (!scale_dtype_fits(q, t->info->type)) {
    s.problem(sname + ": scale dtype " + std::string(dtype_name(t->info->type)) + " does not fit " + q.describe());
    return nullptr;
  }
  if (scales_seen && s.out.scale_dtype != t->info->type) {
    s.problem(sname + ": dtype " + std::string(dtype_name(t->info->type)) + ", but the other expert scales are " +
              std::string(dtype_name(s.out.scale_dtype)) + " (one dtype for all of a checkpoint's expert scales)");
    return nullptr;
  }
  if (scales_seen && s.out.scale_naming != naming) {
    s.problem(sname + ": named as " + q.names.scale[naming] + ", but the other expert scales are named as " +
              q.names.scale[s.out.scale_naming] + " (one naming for all of a checkpoint's expert scales)");
    return nullptr;
  }
  scales_seen = true;
  s.out.scale_dtype = t->info->type;
  s.out.scale_naming = naming;
  return t;
}

// The grid of one stored matrix's scales, in logical [rows_total, cols] terms; `shared` is
// set when one scale serves every stacked matrix. False (a problem reported) when the scale
// tensor does not fit.
bool scale_grid_of(const companion_site& s, const checkpoint::entry& t, scale_grid& grid, bool& shared) {
  const quant_format& q = s.out.quant;
  const std::string& sname = t.info->name;
  const std::vector<std::int64_t>& sshape = t.info->shape;
  const std::size_t lead = s.e.stacked ? 1 : 0;
  shared = false;
  if (q.scheme == quant_scheme::fp8) {
    std::vector<std::int64_t> w = s.stacked({s.g.rows_total, s.g.cols}), sh = sshape;
    if (s.e.transpose && sh.size() == lead + 2) std::swap(sh[lead], sh[lead + 1]);
    try {
      grid = classify_fp8_scale(sname, w, sh, q.block);
    } catch (const error& err) {
      s.problem(err.what());
      return false;
    }
    if (grid.kind == scale_kind::per_tensor) {
      shared = s.e.stacked && grid.batch == 1;
      grid.rows = s.g.rows_total;
      grid.block_rows = s.g.rows_total;
    }
    grid.batch = 1;
    return true;
  }
  grid = q.group_grid_for(s.g.rows_total, s.g.cols);
  const bool st = s.e.transpose != q.stored_transposed();
  const std::vector<std::int64_t> expect =
      s.stacked(st ? std::vector<std::int64_t>{grid.grid_cols(), grid.grid_rows()} : std::vector<std::int64_t>{grid.grid_rows(), grid.grid_cols()});
  if (sshape != expect) {
    s.problem(sname + ": scale shape " + shape_string(sshape) + ", expected " + shape_string(expect) + " (" + grid.describe() +
              " over the " + str(s.g.rows_total) + "x" + str(s.g.cols) + " matrix of " + s.data_name + ")");
    return false;
  }
  return true;
}

// Each piece's scales as a strided view into the scale tensor, for every expert it holds.
void place_scale_views(const companion_site& s, const checkpoint::entry& t, const scale_grid& grid, bool shared) {
  const quant_format& q = s.out.quant;
  const bool st = s.e.transpose != q.stored_transposed();
  const std::int64_t gr = grid.grid_rows(), gc = grid.grid_cols();
  const model_dims& d = s.out.dims;
  for (std::int64_t ex = s.e.stacked ? 0 : s.expert; ex < (s.e.stacked ? d.E : s.expert + 1); ++ex) {
    const std::uint64_t base = s.e.stacked && !shared ? static_cast<std::uint64_t>(ex * gr * gc) : 0;
    auto& slots = s.out.expert_scales[s.layer][static_cast<std::size_t>(ex)];
    for (std::size_t k = 0; k < s.e.pieces.size(); ++k) {
      const std::int64_t r0 = s.g.row_offsets[k], r1 = r0 + s.g.piece_rows[k];
      piece_scales ps;
      index_range rows;
      try {
        rows = scale_rows_for(t.info->name, grid, r0, r1);
        ps.grid = slice_rows(t.info->name, grid, r0, r1);
      } catch (const error& err) {
        s.problem(err.what());
        return;
      }
      matrix_view& v = ps.scale;
      v.source = &t;
      v.type = t.info->type;
      v.rows = rows.end - rows.begin;
      v.cols = gc;
      if (st) {
        v.offset = base + static_cast<std::uint64_t>(rows.begin);
        v.row_stride = 1;
        v.col_stride = gr;
      } else {
        v.offset = base + static_cast<std::uint64_t>(rows.begin * gc);
        v.row_stride = gc;
        v.col_stride = 1;
      }
      slots[static_cast<std::size_t>(s.e.pieces[k])] = ps;
    }
  }
}

// GPTQ's g_idx: one group index per input row, in order (act-order is not supported).
void check_g_idx(const companion_site& s) {
  const checkpoint::entry* t = s.find(s.c.g_idx_found);
  if (!t) return;
  const quant_format& q = s.out.quant;
  const std::vector<std::int64_t> expect = s.stacked({s.g.cols});
  if (t->info->type != dtype::I32 || t->info->shape != expect) {
    s.problem(t->info->name + ": " + std::string(dtype_name(t->info->type)) + " " + shape_string(t->info->shape) +
              ", expected I32 " + shape_string(expect) + " (one group index per input row)");
    return;
  }
  try {
    const std::int64_t matrices = s.e.stacked ? s.out.dims.E : 1;
    for (std::int64_t m = 0; m < matrices; ++m)
      check_gptq_g_idx(t->info->name, t->data() + 4 * m * s.g.cols, {s.g.cols, s.g.rows_total, q.group > 0 ? q.group : s.g.cols});
    s.out.has_g_idx = true;
  } catch (const error& err) {
    s.problem(err.what());
  }
}

// GPTQ's qzeros: the symmetric zero point only.
void check_zeros(const companion_site& s, const scale_grid& grid) {
  const checkpoint::entry* t = s.find(s.c.zeros_found);
  if (!t) return;
  const quant_format& q = s.out.quant;
  if (q.scheme == quant_scheme::pack_int4) {
    s.problem(t->info->name + ": zero points are not supported (symmetric int4 only; " + q.describe() + ")");
    return;
  }
  const std::vector<std::int64_t> expect = s.stacked({grid.grid_cols(), (s.g.rows_total + 7) / 8});
  if (t->info->type != dtype::I32 || t->info->shape != expect) {
    s.problem(t->info->name + ": " + std::string(dtype_name(t->info->type)) + " " + shape_string(t->info->shape) +
              ", expected I32 " + shape_string(expect) + " (packed zero points)");
    return;
  }
  const std::size_t n = static_cast<std::size_t>(t->info->nbytes() / 4);
  for (std::size_t i = 0; i < n; ++i)
    if (read_i32(t->data(), i) != q.zero_word) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "0x%08x, expected 0x%08x", static_cast<unsigned>(read_i32(t->data(), i)),
                    static_cast<unsigned>(q.zero_word));
      s.problem(t->info->name + ": element " + str(static_cast<std::int64_t>(i)) + " is " + buf +
                " (the symmetric zero point 8): asymmetric GPTQ is not supported");
      return;
    }
  s.out.has_zeros = true;
}

// compressed-tensors' weight_shape: the unpacked shape, as I64 or I32 values.
void check_shape(const companion_site& s) {
  const checkpoint::entry* t = s.find(s.c.shape_found);
  if (!t) return;
  const std::vector<std::int64_t> expect = s.stacked({s.g.rows_total, s.g.cols});
  bool ok = (t->info->type == dtype::I64 || t->info->type == dtype::I32) && t->info->shape.size() == 1 &&
            t->info->shape[0] == static_cast<std::int64_t>(expect.size());
  for (std::size_t i = 0; ok && i < expect.size(); ++i) ok = read_int(*t, i) == expect[i];
  if (!ok) {
    s.problem(t->info->name + ": expected the I64 or I32 values " + shape_string(expect) + " (the unpacked shape)");
    return;
  }
  s.out.has_shape = true;
  s.out.shape_dtype = t->info->type;
}

}  // namespace

void decode_companions(decoded_checkpoint& out, const entry_companions& c, const expert_entry& e, const entry_geometry& g,
                       int layer, int expert, const std::string& data_name, bool& scales_seen, const problem_sink& problem) {
  const companion_site site{out, c, e, g, layer, expert, data_name, problem};
  const checkpoint::entry* scale = scale_tensor(site, scales_seen);
  if (!scale) return;
  scale_grid grid;
  bool shared = false;
  if (!scale_grid_of(site, *scale, grid, shared)) return;
  place_scale_views(site, *scale, grid, shared);
  // GPTQ / compressed-tensors companions that only restate the format: checked, then
  // regenerated on output.
  check_g_idx(site);
  check_zeros(site, grid);
  check_shape(site);
}

}  // namespace moereg::detail
