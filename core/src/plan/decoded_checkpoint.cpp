#include "moereg/plan/decoded_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "moereg/base/error.h"
#include "expert_companions.h"
#include "moereg/gguf/ggml_type.h"
#include "moereg/gguf/gguf_family.h"

namespace moereg {

using namespace detail;

std::string model_dims::describe() const {
  return "E=" + std::to_string(E) + " H=" + std::to_string(H) + " I=" + std::to_string(I);
}

namespace {

// config.json says the model's weights are bf16 (transformers: "dtype", before 4.56 "torch_dtype";
// a multimodal model's text part in text_config).
bool model_is_bf16(const json::value& config) {
  for (const char* f : {"dtype", "torch_dtype", "text_config.dtype", "text_config.torch_dtype"})
    if (const json::value* v = config.find_path(f); v && v->is_string()) return v->as_string() == "bfloat16";
  return false;
}

std::string fields_of(const config_value& v) {
  std::string s;
  for (const auto& f : v.fields) s += (s.empty() ? "" : " or ") + f;
  return s.empty() ? "(default)" : s;
}

std::int64_t need_dim(const family_spec& spec, const json::value& config, const std::string& path, const char* sym) {
  auto it = spec.dims.find(sym);
  if (it == spec.dims.end()) throw error(spec.manifest_path + ": dims has no '" + sym + "'");
  auto v = resolve_value(it->second, config);
  if (!v || *v < 1 || std::floor(*v) != *v)
    throw error(path + ": expected a positive integer in " + fields_of(it->second) + " for " + sym + " (family " +
                spec.name + ")");
  return static_cast<std::int64_t>(*v);
}

struct piece_geometry {
  std::int64_t rows, cols;
};

piece_geometry geometry(piece p, const model_dims& d) {
  return p == piece::down ? piece_geometry{d.H, d.I} : piece_geometry{d.I, d.H};
}

// Expected stored shape of an entry, and each piece's row offset in the fused matrix.
std::vector<std::int64_t> entry_shape(const expert_entry& e, const model_dims& d, std::vector<std::int64_t>* row_offsets,
                                      std::int64_t* rows_total, std::int64_t* cols) {
  std::int64_t r = 0, c = -1;
  for (piece p : e.pieces) {
    auto g = geometry(p, d);
    if (row_offsets) row_offsets->push_back(r);
    r += g.rows;
    if (c >= 0 && c != g.cols)
      throw error("expert entry '" + e.name + "' fuses pieces with different column counts (" + std::to_string(c) + " and " +
                  std::to_string(g.cols) + ")");
    c = g.cols;
  }
  if (rows_total) *rows_total = r;
  if (cols) *cols = c;
  std::vector<std::int64_t> shape;
  if (e.stacked) shape.push_back(d.E);
  if (e.transpose) shape.insert(shape.end(), {c, r});
  else shape.insert(shape.end(), {r, c});
  return shape;
}

std::string shape_formula(const expert_entry& e, const model_dims& d) {
  std::string rows;
  for (piece p : e.pieces) rows += (rows.empty() ? "" : "+") + std::string(p == piece::down ? "H" : "I");
  std::string cols = e.pieces[0] == piece::down ? "I" : "H";
  std::string s = e.stacked ? "E, " : "";
  s += e.transpose ? cols + ", " + rows : rows + ", " + cols;
  return "[" + s + "] with " + d.describe();
}

// The stored shape of an entry under a quantization scheme: units instead of elements
// along the input axis, GPTQ's transposed storage. Empty (with *why set) when the scheme
// cannot store this entry.
std::vector<std::int64_t> stored_shape(const expert_entry& e, const model_dims& d, const quant_format& q, std::string* why) {
  std::int64_t rows = 0, cols = 0;
  std::vector<std::int64_t> logical = entry_shape(e, d, nullptr, &rows, &cols);
  if (!q.quantized() || q.pack() == 1) return logical;
  if (e.transpose) {
    *why = "entry '" + e.name + "' stores its matrices transposed (transpose: true), but " + q.describe() +
           " weights are packed along the input axis and cannot be transposed";
    return {};
  }
  if (cols % q.pack() != 0 && q.scheme != quant_scheme::pack_int4) {
    *why = "entry '" + e.name + "': " + std::to_string(cols) + " input columns are not a multiple of " +
           std::to_string(q.pack()) + ", which " + q.describe() + " packs into one stored unit";
    return {};
  }
  std::int64_t units = (cols + q.pack() - 1) / q.pack();
  std::vector<std::int64_t> shape;
  if (e.stacked) shape.push_back(d.E);
  if (q.stored_transposed()) shape.insert(shape.end(), {units, rows});
  else shape.insert(shape.end(), {rows, units});
  return shape;
}

key_template data_key(const expert_entry& e, const quant_format& q) {
  if (!q.quantized() || q.names.weight == "{key}") return e.key;
  return key_template(apply_naming(q.names.weight, e.key.text()), "quantization naming of entry '" + e.name + "'");
}

}  // namespace

model_dims read_dims(const family_spec& spec, const json::value& config, const std::string& path) {
  model_dims d;
  d.E = need_dim(spec, config, path, "E");
  d.H = need_dim(spec, config, path, "H");
  d.I = need_dim(spec, config, path, "I");
  if (spec.dims.count("K")) d.K = need_dim(spec, config, path, "K");
  const auto& r = spec.moe_layers;
  auto count = resolve_value(r.count, config);
  if (!count || *count < 1) throw error(path + ": expected the layer count in " + fields_of(r.count));
  int n = static_cast<int>(*count);
  int step = static_cast<int>(resolve_value(r.sparse_step, config).value_or(1));
  int first = static_cast<int>(resolve_value(r.first_dense, config).value_or(0));
  std::set<int> dense;
  if (!r.dense_layers.empty())
    if (const json::value* v = config.find_path(r.dense_layers); v && v->is_array())
      for (const auto& x : v->as_array())
        if (x.is_integer()) dense.insert(static_cast<int>(x.as_int()));
  for (int l = 0; l < n; ++l) {
    if (l < first || dense.count(l)) continue;
    if (step > 1 && (l + 1) % step != 0) continue;
    d.moe_layers.push_back(l);
  }
  return d;
}

std::string to_canonical(const layout_spec& layout, const std::string& stored) {
  for (const auto& r : layout.renames)
    if (auto m = r.renamed.match(stored)) return r.canonical.format(*m);
  return stored;
}

std::string from_canonical(const layout_spec& layout, const std::string& canonical) {
  for (const auto& r : layout.renames)
    if (auto m = r.canonical.match(canonical)) return r.renamed.format(*m);
  return canonical;
}

decoded_checkpoint decode_checkpoint(const checkpoint& ckpt, const family_spec& spec, const layout_spec& layout,
                                     const model_dims& dims) {
  decoded_checkpoint out;
  out.ckpt = &ckpt;
  out.spec = &spec;
  out.layout = &layout;
  out.dims = dims;
  std::vector<std::string> problems;
  auto problem = [&](std::string s) { problems.push_back(std::move(s)); };
  const std::string config_where = ckpt.config_path().empty() ? ckpt.path() : ckpt.config_path();
  out.quant = checkpoint_quant_format(ckpt, spec, layout, dims);
  const quant_format& q = out.quant;

  std::set<int> moe(dims.moe_layers.begin(), dims.moe_layers.end());
  int layer_count = dims.moe_layers.empty() ? 0 : dims.moe_layers.back() + 1;
  int extra = 0;
  if (!spec.moe_layers.extra.empty() && ckpt.config().is_object()) {
    extra = static_cast<int>(resolve_value(spec.moe_layers.extra, ckpt.config()).value_or(0));
    if (auto c = resolve_value(spec.moe_layers.count, ckpt.config())) layer_count = static_cast<int>(*c);
  }

  // Per entry: the key of its stored data and of each companion under the quantization naming.
  const std::size_t n_entries = layout.experts.size();
  std::vector<key_template> data_keys;
  std::vector<entry_companions> comps(n_entries);
  for (const auto& e : layout.experts) data_keys.push_back(data_key(e, q));
  if (q.quantized())
    for (std::size_t i = 0; i < n_entries; ++i) comps[i] = companion_keys(layout.experts[i], q);

  // found[entry][layer][expert or -1]
  std::vector<std::map<int, std::map<int, const checkpoint::entry*>>> found(n_entries);
  std::optional<dtype> expert_type;
  std::set<const checkpoint::entry*> claimed_companions;
  auto in_layer_range = [&](const std::string& name, int l, int x) {
    bool mtp = l >= layer_count && l < layer_count + extra;
    if (!moe.count(l) && !mtp) {
      problem(name + ": experts in layer " + std::to_string(l) + ", which config.json makes a dense layer (MoE layers: " +
              std::to_string(dims.moe_layers.size()) + " of " + std::to_string(layer_count) + ")");
      return false;
    }
    if (x >= dims.E) {
      problem(name + ": expert " + std::to_string(x) + " but config.json says E=" + std::to_string(dims.E));
      return false;
    }
    return true;
  };
  for (const auto& t : ckpt.tensors()) {
    const std::string& name = t.info->name;
    bool claimed = false;
    for (std::size_t i = 0; i < n_entries && !claimed; ++i) {
      const expert_entry& e = layout.experts[i];
      auto m = data_keys[i].match(name);
      if (!m) {
        if (q.quantized() && claim_companion(comps[i], e, t)) claimed = true;
        continue;
      }
      claimed = true;
      int l = std::stoi(m->at("layer"));
      int x = e.stacked ? -1 : std::stoi(m->at("expert"));
      if (!in_layer_range(name, l, x)) continue;
      std::string why;
      auto expected = stored_shape(e, dims, q, &why);
      if (expected.empty()) {
        problem(name + ": " + why + " (layout '" + layout.name + "')");
        continue;
      }
      if (element_shape(*t.info) != expected) {
        problem(name + ": shape " + shape_string(element_shape(*t.info)) + ", expected " + shape_string(expected) + " (" +
                shape_formula(e, dims) + (q.pack() > 1 ? ", packed " + std::to_string(q.pack()) + " per stored element" : "") +
                " from " + (ckpt.config_path().empty() ? "config" : ckpt.config_path()) + ")");
        continue;
      }
      if (t.info->ggml_blocks && e.transpose) {
        // ggml blocks run along the stored rows: a transposed view would cut through them.
        problem(name + ": " + storage_type_name(*t.info) + " blocks cannot be read through layout '" + layout.name +
                "', which stores this tensor transposed");
        continue;
      }
      if (expert_type && *expert_type != t.info->type) {
        problem(name + ": dtype " + std::string(dtype_name(t.info->type)) + ", but other experts are " +
                std::string(dtype_name(*expert_type)));
        continue;
      }
      expert_type = t.info->type;
      found[i][l][x] = &t;
    }
    if (claimed) continue;
    out.others.push_back({name, &t, {}});
  }
  if (q.quantized() && expert_type) check_expert_dtype(q, *expert_type, config_where, problem);

  // Everything else passes through under its canonical name (quantized weights and their
  // companions under the canonical name of the unquantized weight).
  std::vector<passthrough_tensor> others = std::move(out.others);
  out.others.clear();
  for (auto& p : others) {
    const std::string& name = p.source->info->name;
    std::string key = name;
    if (q.quantized()) link_quantized_passthrough(ckpt, q, p);
    if (p.role != quant_role::none) key = *unapply_naming(p.quant_naming, name);
    std::string canonical_key = to_canonical(layout, key);
    bool pass = std::any_of(spec.passthrough.begin(), spec.passthrough.end(),
                            [&](const key_template& t) { return t.match(canonical_key).has_value(); });
    if (!pass) {
      problem(name + ": not claimed by any rule of family '" + spec.name + "' layout '" + layout.name +
              "' (not an expert of this layout, and no passthrough entry matches" +
              (canonical_key != name ? " its canonical name '" + canonical_key + "'" : std::string()) + ")");
      continue;
    }
    if (p.role != quant_role::none) {
      p.quant_key = canonical_key;
      p.canonical = apply_naming(p.quant_naming, canonical_key);
    } else {
      p.canonical = canonical_key;
    }
    for (const auto& tr : layout.transforms)
      if (tr.key.match(name)) p.decode_hook = tr.hook;
    if (layout.container == "gguf" && p.source->info->type == dtype::F32 && !p.source->info->ggml_blocks &&
        model_is_bf16(ckpt.config())) {
      tensor_spec as_bf16{name, dtype::BF16, p.source->info->shape};
      if (gguf_wants_f32(spec, as_bf16)) p.narrow_to = dtype::BF16;
    }
    out.others.push_back(std::move(p));
  }

  // MTP layers (after the last decoder layer) count as MoE layers when their experts exist.
  std::set<int> layers = moe;
  for (const auto& per_entry : found)
    for (const auto& [l, _] : per_entry)
      if (l >= layer_count) layers.insert(l);
  out.dims.moe_layers.assign(layers.begin(), layers.end());

  bool scales_seen = false;
  for (int l : layers) {
    auto& experts = out.experts[l];
    experts.resize(static_cast<std::size_t>(dims.E));
    if (q.quantized()) out.expert_scales[l].resize(static_cast<std::size_t>(dims.E));
    for (std::size_t i = 0; i < n_entries; ++i) {
      const expert_entry& e = layout.experts[i];
      std::vector<std::int64_t> row_off;
      std::int64_t rows_total = 0, cols = 0;
      entry_shape(e, dims, &row_off, &rows_total, &cols);
      // Units along the input axis, and whether the units are stored [in, out].
      const std::int64_t units = (cols + q.pack() - 1) / q.pack();
      const bool st = e.transpose != q.stored_transposed();
      entry_geometry eg{row_off, {}, rows_total, cols};
      for (piece p : e.pieces) eg.piece_rows.push_back(geometry(p, dims).rows);
      std::vector<std::string> missing;
      for (std::int64_t x = 0; x < (e.stacked ? 1 : dims.E); ++x) {
        auto lit = found[i].find(l);
        const checkpoint::entry* src = nullptr;
        if (lit != found[i].end()) {
          auto xit = lit->second.find(e.stacked ? -1 : static_cast<int>(x));
          if (xit != lit->second.end()) src = xit->second;
        }
        captures c{{"layer", std::to_string(l)}, {"expert", std::to_string(x)}};
        if (!src) {
          missing.push_back(data_keys[i].format(c));
          continue;
        }
        // ggml blocks are opaque bytes: their views count columns in bytes (rows stay whole).
        std::int64_t row_len = units;
        if (src->info->ggml_blocks) {
          auto tr = ggml_traits(*src->info->ggml_blocks);
          row_len = cols / static_cast<std::int64_t>(tr->block_size) * static_cast<std::int64_t>(tr->type_size);
        }
        for (std::int64_t ex = e.stacked ? 0 : x; ex < (e.stacked ? dims.E : x + 1); ++ex) {
          std::uint64_t base = e.stacked ? static_cast<std::uint64_t>(ex * rows_total * row_len) : 0;
          for (std::size_t k = 0; k < e.pieces.size(); ++k) {
            auto g = geometry(e.pieces[k], dims);
            matrix_view v;
            v.source = src;
            v.rows = g.rows;
            v.cols = row_len;
            v.type = src->info->type;
            if (st) {
              v.offset = base + static_cast<std::uint64_t>(row_off[k]);
              v.row_stride = 1;
              v.col_stride = rows_total;
            } else {
              v.offset = base + static_cast<std::uint64_t>(row_off[k] * row_len);
              v.row_stride = row_len;
              v.col_stride = 1;
            }
            experts[static_cast<std::size_t>(ex)][static_cast<std::size_t>(e.pieces[k])] = v;
          }
        }
        if (q.quantized()) decode_companions(out, comps[i], e, eg, l, static_cast<int>(x), src->info->name, scales_seen, problem);
      }
      if (!missing.empty()) {
        std::string list;
        for (std::size_t j = 0; j < missing.size() && j < 8; ++j) list += (j ? ", " : "") + missing[j];
        if (missing.size() > 8) list += ", ... (" + std::to_string(missing.size()) + " in all)";
        problem("layer " + std::to_string(l) + ": missing expert tensor" + (missing.size() > 1 ? "s " : " ") + list +
                " (layout '" + layout.name + "', E=" + std::to_string(dims.E) + ")");
      }
    }
  }
  out.expert_dtype = expert_type.value_or(dtype::BF16);
  std::sort(out.others.begin(), out.others.end(),
            [](const passthrough_tensor& a, const passthrough_tensor& b) { return a.canonical < b.canonical; });
  for (std::size_t i = 1; i < out.others.size(); ++i)
    if (out.others[i].canonical == out.others[i - 1].canonical)
      problem(out.others[i].source->info->name + " and " + out.others[i - 1].source->info->name + " both rename to '" +
              out.others[i].canonical + "'");
  if (!problems.empty()) {
    std::string msg = ckpt.path() + ": " + std::to_string(problems.size()) + " problem" + (problems.size() > 1 ? "s" : "") +
                      " reading it as family '" + spec.name + "' layout '" + layout.name + "'" +
                      (q.quantized() ? " (quantization: " + q.describe() + ")" : "") + ":";
    for (const auto& p : problems) msg += "\n  " + p;
    throw error(msg);
  }
  return out;
}

const layout_spec& detect_layout(const checkpoint& ckpt, const family_spec& spec, const model_dims& dims) {
  if (dims.moe_layers.empty()) throw error(ckpt.path() + ": config.json gives no MoE layers for family " + spec.name);
  int l = dims.moe_layers.front();
  const quant_format q =
      read_quant_format(spec, ckpt.config(), ckpt.config_path().empty() ? ckpt.path() : ckpt.config_path());
  std::vector<const layout_spec*> by_keys, by_shapes;
  for (const auto& layout : spec.layouts) {
    bool keys = true, shapes = true;
    for (const auto& e : layout.experts) {
      captures c{{"layer", std::to_string(l)}, {"expert", "0"}};
      const checkpoint::entry* t = ckpt.find(data_key(e, q).format(c));
      if (!t) {
        keys = false;
        break;
      }
      std::string why;
      if (element_shape(*t->info) != stored_shape(e, dims, q, &why)) shapes = false;
    }
    if (keys) by_keys.push_back(&layout);
    if (keys && shapes) by_shapes.push_back(&layout);
  }
  auto names = [](const std::vector<const layout_spec*>& v) {
    std::string s;
    for (auto* x : v) s += (s.empty() ? "" : ", ") + x->name;
    return s;
  };
  // Layouts that store a tensor under the same key with the same shape but different
  // contents (transposed or not, when H == 2I) cannot be told apart: never guess.
  for (std::size_t a = 0; a < by_keys.size(); ++a)
    for (std::size_t b = a + 1; b < by_keys.size(); ++b)
      for (const auto& ea : by_keys[a]->experts)
        for (const auto& eb : by_keys[b]->experts)
          if (ea.key.text() == eb.key.text() && (ea.transpose != eb.transpose || ea.pieces != eb.pieces) &&
              entry_shape(ea, dims, nullptr, nullptr, nullptr) == entry_shape(eb, dims, nullptr, nullptr, nullptr)) {
            captures c{{"layer", std::to_string(l)}, {"expert", "0"}};
            throw error(ckpt.path() + ": '" + ea.key.format(c) + "' has shape " +
                        shape_string(entry_shape(ea, dims, nullptr, nullptr, nullptr)) + " in both layout '" +
                        by_keys[a]->name + "' and layout '" + by_keys[b]->name + "' (" + dims.describe() +
                        "), with different contents, so the files cannot say which one this is; pass --from " +
                        by_keys[a]->name + " or --from " + by_keys[b]->name);
          }
  if (by_shapes.size() == 1) return *by_shapes.front();
  // The same names in two containers (gguf, gguf_names): the files' container decides.
  if (by_shapes.size() > 1) {
    const std::string held = ckpt.gguf() ? "gguf" : "safetensors";
    std::vector<const layout_spec*> same;
    for (auto* x : by_shapes)
      if (x->container == held) same.push_back(x);
    if (same.size() == 1) return *same.front();
  }
  if (by_shapes.size() > 1)
    throw error(ckpt.path() + ": the tensors fit several layouts of family '" + spec.name + "' equally (" + names(by_shapes) +
                ": same names and shapes with " + dims.describe() +
                "), so the layout cannot be told from the files; say which with --from");
  // One layout has these names: read it, and let decoding name every tensor whose shape
  // disagrees with config.json.
  if (by_keys.size() == 1) return *by_keys.front();
  if (!by_keys.empty())
    throw error(ckpt.path() + ": the expert tensors of layer " + std::to_string(l) + " have the names of layout(s) " +
                names(by_keys) + " of family '" + spec.name + "' but not their shapes for " + dims.describe() +
                " (does config.json belong to these weights?)");
  std::string expect;
  for (const auto& layout : spec.layouts) {
    captures c{{"layer", std::to_string(l)}, {"expert", "0"}};
    expect += "\n  " + layout.name + ": " + data_key(layout.experts.front(), q).format(c);
  }
  throw error(ckpt.path() + ": no layout of family '" + spec.name + "' matches its tensors; looked for:" + expect);
}

}  // namespace moereg
