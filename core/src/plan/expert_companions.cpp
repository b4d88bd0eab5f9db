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

void decode_companions(decoded_checkpoint& out, const entry_companions& c, const expert_entry& e, const entry_geometry& g,
                       int layer, int expert, const std::string& data_name, bool& scales_seen, const problem_sink& problem) {
  const quant_format& q = out.quant;
  const model_dims& d = out.dims;
  const int x = e.stacked ? -1 : expert;
  captures names{{"layer", std::to_string(layer)}, {"expert", std::to_string(expert)}};
  auto find = [&](const std::map<int, std::map<int, const checkpoint::entry*>>& m) -> const checkpoint::entry* {
    auto l = m.find(layer);
    if (l == m.end()) return nullptr;
    auto it = l->second.find(x);
    return it == l->second.end() ? nullptr : it->second;
  };
  const checkpoint::entry* scale_t = nullptr;
  std::size_t naming = 0;
  if (auto l = c.scales.find(layer); l != c.scales.end())
    if (auto it = l->second.find(x); it != l->second.end()) std::tie(scale_t, naming) = it->second;
  if (!scale_t) {
    std::string expect;
    for (const auto& k : c.scale) expect += (expect.empty() ? "" : " or ") + k.format(names);
    problem(data_name + ": its scale tensor is missing: expected " + expect + " (" + q.describe() + ")");
    return;
  }
  const std::string& sname = scale_t->info->name;
  const std::vector<std::int64_t>& sshape = scale_t->info->shape;
  if (!scale_dtype_fits(q, scale_t->info->type)) {
    problem(sname + ": scale dtype " + std::string(dtype_name(scale_t->info->type)) + " does not fit " + q.describe());
    return;
  }
  if (scales_seen && (out.scale_dtype != scale_t->info->type || out.scale_naming != naming)) {
    problem(sname + ": dtype " + std::string(dtype_name(scale_t->info->type)) + " and name differ from the other expert scales (" +
            std::string(dtype_name(out.scale_dtype)) + ", " + q.names.scale[out.scale_naming] + ")");
    return;
  }
  scales_seen = true;
  out.scale_dtype = scale_t->info->type;
  out.scale_naming = naming;

  // The grid of one stored matrix, in logical [rows_total, cols] terms.
  const bool st = e.transpose != q.stored_transposed();
  const std::size_t lead = e.stacked ? 1 : 0;
  scale_grid grid;
  bool shared = false;  // one scale for every stacked matrix
  if (q.scheme == quant_scheme::fp8) {
    std::vector<std::int64_t> w, s = sshape;
    if (e.stacked) w.push_back(d.E);
    w.insert(w.end(), {g.rows_total, g.cols});
    if (e.transpose && s.size() == lead + 2) std::swap(s[lead], s[lead + 1]);
    try {
      grid = classify_fp8_scale(sname, w, s, q.block);
    } catch (const error& err) {
      problem(err.what());
      return;
    }
    if (grid.kind == scale_kind::per_tensor) {
      shared = e.stacked && grid.batch == 1;
      grid.rows = g.rows_total;
      grid.block_rows = g.rows_total;
    }
    grid.batch = 1;
  } else {
    grid = q.group_grid_for(g.rows_total, g.cols);
    std::vector<std::int64_t> expect;
    if (e.stacked) expect.push_back(d.E);
    if (st) expect.insert(expect.end(), {grid.grid_cols(), grid.grid_rows()});
    else expect.insert(expect.end(), {grid.grid_rows(), grid.grid_cols()});
    if (sshape != expect) {
      problem(sname + ": scale shape " + shape_string(sshape) + ", expected " + shape_string(expect) + " (" + grid.describe() +
              " over the " + str(g.rows_total) + "x" + str(g.cols) + " matrix of " + data_name + ")");
      return;
    }
  }
  const std::int64_t gr = grid.grid_rows(), gc = grid.grid_cols();
  for (std::int64_t ex = e.stacked ? 0 : expert; ex < (e.stacked ? d.E : expert + 1); ++ex) {
    const std::uint64_t base = e.stacked && !shared ? static_cast<std::uint64_t>(ex * gr * gc) : 0;
    auto& slots = out.expert_scales[layer][static_cast<std::size_t>(ex)];
    for (std::size_t k = 0; k < e.pieces.size(); ++k) {
      const std::int64_t r0 = g.row_offsets[k], r1 = r0 + g.piece_rows[k];
      piece_scales ps;
      index_range rows;
      try {
        rows = scale_rows_for(sname, grid, r0, r1);
        ps.grid = slice_rows(sname, grid, r0, r1);
      } catch (const error& err) {
        problem(err.what());
        return;
      }
      matrix_view& v = ps.scale;
      v.source = scale_t;
      v.type = scale_t->info->type;
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
      slots[static_cast<std::size_t>(e.pieces[k])] = ps;
    }
  }

  // GPTQ / compressed-tensors companions that only restate the format: checked, then
  // regenerated on output.
  const std::int64_t matrices = e.stacked ? d.E : 1;
  if (const checkpoint::entry* t = find(c.g_idx_found)) {
    std::vector<std::int64_t> expect;
    if (e.stacked) expect.push_back(d.E);
    expect.push_back(g.cols);
    if (t->info->type != dtype::I32 || t->info->shape != expect) {
      problem(t->info->name + ": " + std::string(dtype_name(t->info->type)) + " " + shape_string(t->info->shape) +
              ", expected I32 " + shape_string(expect) + " (one group index per input row)");
    } else {
      try {
        for (std::int64_t m = 0; m < matrices; ++m)
          check_gptq_g_idx(t->info->name, t->data() + 4 * m * g.cols, {g.cols, g.rows_total, q.group > 0 ? q.group : g.cols});
        out.has_g_idx = true;
      } catch (const error& err) {
        problem(err.what());
      }
    }
  }
  if (const checkpoint::entry* t = find(c.zeros_found)) {
    if (q.scheme == quant_scheme::pack_int4) {
      problem(t->info->name + ": zero points are not supported (symmetric int4 only; " + q.describe() + ")");
    } else {
      std::vector<std::int64_t> expect;
      if (e.stacked) expect.push_back(d.E);
      expect.insert(expect.end(), {grid.grid_cols(), (g.rows_total + 7) / 8});
      std::size_t n = static_cast<std::size_t>(t->info->nbytes() / 4);
      if (t->info->type != dtype::I32 || t->info->shape != expect) {
        problem(t->info->name + ": " + std::string(dtype_name(t->info->type)) + " " + shape_string(t->info->shape) +
                ", expected I32 " + shape_string(expect) + " (packed zero points)");
      } else {
        for (std::size_t i = 0; i < n; ++i)
          if (read_i32(t->data(), i) != q.zero_word) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "0x%08x, expected 0x%08x", static_cast<unsigned>(read_i32(t->data(), i)),
                          static_cast<unsigned>(q.zero_word));
            problem(t->info->name + ": element " + str(static_cast<std::int64_t>(i)) + " is " + buf +
                    " (the symmetric zero point 8): asymmetric GPTQ is not supported");
            return;
          }
        out.has_zeros = true;
      }
    }
  }
  if (const checkpoint::entry* t = find(c.shape_found)) {
    std::vector<std::int64_t> expect;
    if (e.stacked) expect.push_back(d.E);
    expect.insert(expect.end(), {g.rows_total, g.cols});
    bool ok = (t->info->type == dtype::I64 || t->info->type == dtype::I32) && t->info->shape.size() == 1 &&
              t->info->shape[0] == static_cast<std::int64_t>(expect.size());
    for (std::size_t i = 0; ok && i < expect.size(); ++i) ok = read_int(*t, i) == expect[i];
    if (!ok) problem(t->info->name + ": expected the I64 or I32 values " + shape_string(expect) + " (the unpacked shape)");
    else {
      out.has_shape = true;
      out.shape_dtype = t->info->type;
    }
  }
}

}  // namespace moereg::detail
