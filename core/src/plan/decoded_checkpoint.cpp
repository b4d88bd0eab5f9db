// SPDX-License-Identifier: Apache-2.0
#include "moereg/plan/decoded_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>

#include "moereg/base/error.h"
#include "moereg/base/printable.h"
#include "expert_companions.h"
#include "tensor_splits.h"
#include "moereg/gguf/ggml_type.h"
#include "moereg/gguf/gguf_family.h"

namespace moereg {

using namespace detail;

namespace {

// config.json says the model's weights are bf16 (transformers: "dtype", before 4.56 "torch_dtype";
// a multimodal model's text part in text_config).
bool model_is_bf16(const json::value& config) {
  for (const char* f : {"dtype", "torch_dtype", "text_config.dtype", "text_config.torch_dtype"})
    if (const json::value* v = config.find_path(f); v && v->is_string()) return v->as_string() == "bfloat16";
  return false;
}

// What the dimensions were read from, for messages: a .gguf has no config.json.
std::string config_name(const checkpoint& ckpt) {
  return ckpt.gguf() && ckpt.config_path().find("config.json") == std::string::npos ? "the .gguf's metadata" : "config.json";
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
  shape.push_back(e.transpose ? c : r);  // (push_back: GCC 12 misreads insert of a list here)
  shape.push_back(e.transpose ? r : c);
  return shape;
}

std::string shape_formula(const expert_entry& e, const model_dims& d) {
  std::string rows;
  for (piece p : e.pieces) rows += (rows.empty() ? "" : "+") + std::string(p == piece::down ? "H" : "I");
  std::string cols = e.pieces[0] == piece::down ? "I" : "H";
  std::string s = e.stacked ? "E, " : "";
  s += e.transpose ? cols + ", " + rows : rows + ", " + cols;
  std::vector<std::string> symbols;
  if (e.stacked) symbols.push_back("E");
  symbols.push_back(e.pieces[0] == piece::down ? "H" : "I");
  symbols.push_back(cols);
  return "[" + s + "]: " + d.explain(symbols);
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

namespace {

// Decodes one checkpoint in phases: claim each stored tensor (an expert of some entry, or
// not), pass the others through under canonical names, settle the MoE layers (MTP ones
// included), build each expert piece's view, and report every problem at once.
class decoder {
 public:
  decoder(const checkpoint& ckpt, const family_spec& spec, const layout_spec& layout, const model_dims& dims)
      : ckpt_(ckpt), spec_(spec), layout_(layout), dims_(dims),
        config_where_(ckpt.config_path().empty() ? ckpt.path() : ckpt.config_path()),
        config_name_(config_name(ckpt)),
        moe_(dims.moe_layers.begin(), dims.moe_layers.end()), n_entries_(layout.experts.size()), comps_(n_entries_),
        found_(n_entries_) {
    out_.ckpt = &ckpt;
    out_.spec = &spec;
    out_.layout = &layout;
    out_.dims = dims;
    out_.quant = checkpoint_quant_format(ckpt, spec, layout, dims);
    layer_count_ = dims.moe_layers.empty() ? 0 : dims.moe_layers.back() + 1;
    if (!spec.moe_layers.extra.empty() && ckpt.config().is_object()) {
      extra_ = static_cast<int>(resolve_value(spec.moe_layers.extra, ckpt.config()).value_or(0));
      if (auto c = resolve_value(spec.moe_layers.count, ckpt.config())) layer_count_ = static_cast<int>(*c);
    }
    // Per entry: the key of its stored data and of each companion under the quantization naming.
    for (const auto& e : layout.experts) data_keys_.push_back(data_key(e, q()));
    if (q().quantized())
      for (std::size_t i = 0; i < n_entries_; ++i) comps_[i] = companion_keys(layout.experts[i], q());
  }

  decoded_checkpoint run() {
    claim_tensors();
    pass_others();
    join_splits();
    settle_layers();
    bool scales_seen = false;
    for (int l : out_.dims.moe_layers) {
      out_.experts[l].resize(static_cast<std::size_t>(dims_.E));
      if (q().quantized()) out_.expert_scales[l].resize(static_cast<std::size_t>(dims_.E));
      for (std::size_t i = 0; i < n_entries_; ++i) entry_views(l, i, scales_seen);
    }
    check_routers();
    finish();
    return std::move(out_);
  }

 private:
  const quant_format& q() const { return out_.quant; }
  void problem(std::string s) { problems_.push_back(std::move(s)); }

  bool in_layer_range(const std::string& name, int l, int x) {
    const bool mtp = l >= layer_count_ && l < layer_count_ + extra_;
    if (!moe_.count(l) && !mtp) {
      problem(printable(name) + ": experts in layer " + std::to_string(l) + ", which " + config_name_ + " makes a dense layer (MoE layers: " +
              std::to_string(dims_.moe_layers.size()) + " of " + std::to_string(layer_count_) + ")");
      return false;
    }
    if (x >= dims_.E) {
      problem(printable(name) + ": expert " + std::to_string(x) + " but " + config_name_ + " says E=" + std::to_string(dims_.E));
      return false;
    }
    return true;
  }

  // Whether tensor t is an expert of entry e, found in layer l (expert x, -1 when stacked)
  // with the right shape and dtype; a problem otherwise.
  bool accept_expert(const checkpoint::entry& t, const expert_entry& e, int l, int x) {
    const std::string& name = t.info->name;
    if (!in_layer_range(name, l, x)) return false;
    std::string why;
    auto expected = stored_shape(e, dims_, q(), &why);
    if (expected.empty()) {
      problem(printable(name) + ": " + why + " (layout '" + layout_.name + "')");
      return false;
    }
    if (element_shape(*t.info) != expected) {
      problem(printable(name) + ": shape " + shape_string(element_shape(*t.info)) + ", expected " + shape_string(expected) + " (" +
              shape_formula(e, dims_) + (q().pack() > 1 ? ", packed " + std::to_string(q().pack()) + " per stored element" : "") +
              "; entry '" + e.name + "' of layout '" + layout_.name + "' at " + e.at.str() + ")");
      misshapen_.insert(name);
      return false;
    }
    if (t.info->ggml_blocks && e.transpose) {
      // ggml blocks run along the stored rows: a transposed view would cut through them.
      problem(printable(name) + ": " + storage_type_name(*t.info) + " blocks cannot be read through layout '" + layout_.name +
              "', which stores this tensor transposed");
      return false;
    }
    // One type per entry (gate, up, down, ...): llama.cpp's quantizer leaves a layer's
    // entries in different types (Q8_0 gate/up beside F16 down), each tensor whole. Types are
    // named as stored (Q8_0, not the U8 its bytes are held as).
    const tensor_info*& first = entry_type_[&e];
    if (first && (first->type != t.info->type || first->ggml_blocks != t.info->ggml_blocks)) {
      problem(printable(name) + ": " + storage_type_name(*t.info) + ", but " + printable(first->name) + " of the same entry is " +
              storage_type_name(*first));
      misshapen_.insert(name);
      return false;
    }
    if (!first) first = t.info;
    if (!expert_type_) expert_type_ = t.info->type;
    else if (*expert_type_ != t.info->type) mixed_types_ = true;
    return true;
  }

  // A stored tensor under an entry's key: layer l, expert x (-1 when stacked).
  struct expert_match {
    const checkpoint::entry* t;
    std::size_t entry;
    int l, x;
  };

  // Each entry's type is the one most of its tensors have, so that an odd one out is the one
  // reported (taking the first found blamed the seven right experts for expert 0's F16).
  void settle_entry_types(const std::vector<expert_match>& matches) {
    std::vector<std::map<std::pair<dtype, std::optional<std::uint32_t>>, std::pair<int, const tensor_info*>>> kinds(n_entries_);
    for (const auto& m : matches) {
      auto& [n, first] = kinds[m.entry][{m.t->info->type, m.t->info->ggml_blocks}];
      if (n++ == 0) first = m.t->info;
    }
    for (std::size_t i = 0; i < n_entries_; ++i) {
      int best = 0;
      for (const auto& [_, kind] : kinds[i])
        if (kind.first > best) {
          best = kind.first;
          entry_type_[&layout_.experts[i]] = kind.second;
        }
    }
  }

  // Every stored tensor: an expert of some entry (found_), a companion, or one of the others.
  void claim_tensors() {
    std::vector<expert_match> matches;
    for (const auto& t : ckpt_.tensors()) {
      bool claimed = false;
      for (std::size_t i = 0; i < n_entries_ && !claimed; ++i) {
        const expert_entry& e = layout_.experts[i];
        auto m = data_keys_[i].match(t.info->name);
        if (!m) {
          if (q().quantized() && claim_companion(comps_[i], e, t)) claimed = true;
          continue;
        }
        claimed = true;
        matches.push_back({&t, i, std::stoi(m->at("layer")), e.stacked ? -1 : std::stoi(m->at("expert"))});
      }
      if (claimed) continue;
      if (auto m = match_split_part(layout_, t.info->name)) {
        auto& parts = split_found_[{m->split, m->canonical}];
        parts.resize(layout_.splits[m->split].parts.size());
        parts[m->part] = &t;
      } else {
        out_.others.push_back({t.info->name, &t, {}});
      }
    }
    settle_entry_types(matches);
    for (const auto& m : matches)
      if (accept_expert(*m.t, layout_.experts[m.entry], m.l, m.x)) found_[m.entry][m.l][m.x] = m.t;
    if (q().quantized() && expert_type_)
      check_expert_dtype(q(), *expert_type_, config_where_, [this](std::string s) { problem(std::move(s)); });
  }

  // Everything else passes through under its canonical name (quantized weights and their
  // companions under the canonical name of the unquantized weight).
  void pass_others() {
    std::vector<passthrough_tensor> others = std::move(out_.others);
    out_.others.clear();
    for (auto& p : others) {
      const std::string& name = p.source->info->name;
      std::string key = name;
      if (q().quantized()) link_quantized_passthrough(ckpt_, q(), p);
      if (p.role != quant_role::none) key = *unapply_naming(p.quant_naming, name);
      const std::string canonical_key = to_canonical(layout_, key);
      const bool pass = std::any_of(spec_.passthrough.begin(), spec_.passthrough.end(),
                                    [&](const key_template& t) { return t.match(canonical_key).has_value(); });
      if (!pass) {
        problem(printable(name) + ": not claimed by any rule of family '" + spec_.name + "' layout '" + layout_.name +
                "' (not an expert of this layout, and no passthrough entry matches" +
                (canonical_key != name ? " its canonical name " + quote(canonical_key) : std::string()) + ")");
        continue;
      }
      if (p.role != quant_role::none) {
        p.quant_key = canonical_key;
        p.canonical = apply_naming(p.quant_naming, canonical_key);
      } else {
        p.canonical = canonical_key;
      }
      for (const auto& tr : layout_.transforms)
        if (tr.key.match(name)) p.decode_hook = tr.hook;
      for (const auto& sq : layout_.squeezes) {
        if (!sq.key.match(name)) continue;
        std::vector<std::int64_t> shape = p.source->info->shape;
        if (static_cast<std::size_t>(sq.axis) > shape.size() || p.source->info->ggml_blocks) {
          problem(printable(name) + ": layout '" + layout_.name + "' stores it without axis " + std::to_string(sq.axis) + " (squeeze at " +
                  sq.at.str() + "), but it has " + std::to_string(shape.size()) + " dimensions" +
                  (p.source->info->ggml_blocks ? " of ggml blocks" : ""));
          break;
        }
        shape.insert(shape.begin() + sq.axis, 1);
        p.unsqueezed_shape = std::move(shape);
        break;
      }
      // llama.cpp's converter widens a bf16 model's norms, routers and 1-D tensors to F32.
      if (layout_.container == "gguf" && p.source->info->type == dtype::F32 && !p.source->info->ggml_blocks &&
          model_is_bf16(ckpt_.config()) && !f32_as_stored(name)) {
        tensor_spec as_bf16{name, dtype::BF16, p.source->info->shape};
        if (gguf_wants_f32(spec_, as_bf16)) p.narrow_to = dtype::BF16;
      }
      out_.others.push_back(std::move(p));
    }
  }

  // Whether the .gguf says it holds `name` as F32 because its source did (gguf_family.h).
  bool f32_as_stored(const std::string& name) {
    if (!f32_as_stored_) {
      f32_as_stored_.emplace();
      if (const gguf_file* g = ckpt_.gguf())
        if (const gguf_value* v = g->find(gguf_f32_as_stored_key); v && v->type() == gguf_type::array && v->element_type() == gguf_type::string)
          for (std::string_view n : v->string_items()) f32_as_stored_->emplace(n);
    }
    return f32_as_stored_->count(name) > 0;
  }

  // Tensors the layout stores cut per head (its `splits`) are joined into views of the
  // canonical tensor, which must be one the family passes through.
  void join_splits() {
    for (const auto& [key, parts] : split_found_) {
      const tensor_split& s = layout_.splits[key.first];
      const bool pass = std::any_of(spec_.passthrough.begin(), spec_.passthrough.end(),
                                    [&](const key_template& t) { return t.match(key.second).has_value(); });
      if (!pass) {
        problem(quote(key.second) + " (joined from the split at " + s.at.str() + "): no passthrough entry of family '" +
                spec_.name + "' matches it");
        continue;
      }
      split_geometry g;
      try {
        g = resolve_split(s, ckpt_.config(), config_where_);
      } catch (const error& e) {
        problem(e.what());
        continue;
      }
      if (auto p = join_split(s, g, key.second, parts, [this](std::string m) { problem(std::move(m)); }))
        out_.others.push_back(std::move(*p));
    }
  }

  // MTP layers (after the last decoder layer) count as MoE layers when their experts exist.
  void settle_layers() {
    std::set<int> layers = moe_;
    for (const auto& per_entry : found_)
      for (const auto& [l, _] : per_entry)
        if (l >= layer_count_) layers.insert(l);
    out_.dims.moe_layers.assign(layers.begin(), layers.end());
  }

  // The views of entry i's pieces in layer l, for every expert (and the companions' scales).
  void entry_views(int l, std::size_t i, bool& scales_seen) {
    const expert_entry& e = layout_.experts[i];
    std::vector<std::int64_t> row_off;
    std::int64_t rows_total = 0, cols = 0;
    entry_shape(e, dims_, &row_off, &rows_total, &cols);
    entry_geometry eg{row_off, {}, rows_total, cols};
    for (piece p : e.pieces) eg.piece_rows.push_back(geometry(p, dims_).rows);
    std::vector<std::string> missing;
    for (std::int64_t x = 0; x < (e.stacked ? 1 : dims_.E); ++x) {
      const checkpoint::entry* src = find(i, l, e.stacked ? -1 : static_cast<int>(x));
      if (!src) {
        // A tensor found under this key with the wrong shape was reported as such: it is not missing.
        std::string key = data_keys_[i].format({{"layer", std::to_string(l)}, {"expert", std::to_string(x)}});
        if (!misshapen_.count(key)) missing.push_back(std::move(key));
        continue;
      }
      place_views(e, eg, l, x, *src);
      if (q().quantized())
        decode_companions(out_, comps_[i], e, eg, l, static_cast<int>(x), src->info->name, scales_seen,
                          [this](std::string s) { problem(std::move(s)); });
    }
    if (!missing.empty()) {
      std::string list;
      for (std::size_t j = 0; j < missing.size() && j < 8; ++j) list += (j ? ", " : "") + missing[j];
      if (missing.size() > 8) list += ", ... (" + std::to_string(missing.size()) + " in all)";
      problem("layer " + std::to_string(l) + ": missing expert tensor" + (missing.size() > 1 ? "s " : " ") + list + " (layout '" +
              layout_.name + "', " + dims_.explain({"E"}) + ")");
    }
  }

  const checkpoint::entry* find(std::size_t i, int l, int x) const {
    auto lit = found_[i].find(l);
    if (lit == found_[i].end()) return nullptr;
    auto xit = lit->second.find(x);
    return xit == lit->second.end() ? nullptr : xit->second;
  }

  // One stored tensor's pieces as strided views: all experts of a stacked tensor, or expert x.
  void place_views(const expert_entry& e, const entry_geometry& eg, int l, std::int64_t x, const checkpoint::entry& src) {
    // Units along the input axis, and whether the units are stored [in, out].
    const std::int64_t units = (eg.cols + q().pack() - 1) / q().pack();
    const bool st = e.transpose != q().stored_transposed();
    // ggml blocks are opaque bytes: their views count columns in bytes (rows stay whole).
    std::int64_t row_len = units;
    if (src.info->ggml_blocks) {
      auto tr = ggml_traits(*src.info->ggml_blocks);
      row_len = eg.cols / static_cast<std::int64_t>(tr->block_size) * static_cast<std::int64_t>(tr->type_size);
    }
    auto& experts = out_.experts[l];
    for (std::int64_t ex = e.stacked ? 0 : x; ex < (e.stacked ? dims_.E : x + 1); ++ex) {
      const std::uint64_t base = e.stacked ? static_cast<std::uint64_t>(ex * eg.rows_total * row_len) : 0;
      for (std::size_t k = 0; k < e.pieces.size(); ++k) {
        matrix_view v;
        v.source = &src;
        v.rows = geometry(e.pieces[k], dims_).rows;
        v.cols = row_len;
        v.type = src.info->type;
        if (st) {
          v.offset = base + static_cast<std::uint64_t>(eg.row_offsets[k]);
          v.row_stride = 1;
          v.col_stride = eg.rows_total;
        } else {
          v.offset = base + static_cast<std::uint64_t>(eg.row_offsets[k] * row_len);
          v.row_stride = row_len;
          v.col_stride = 1;
        }
        experts[static_cast<std::size_t>(ex)][static_cast<std::size_t>(e.pieces[k])] = v;
      }
    }
  }

  // A router (or selection bias) of the wrong shape is a damaged checkpoint: it converts into a
  // complete-looking output that routes wrongly or fails to load, so it is refused here, where
  // every reader of the experts passes (moe run names a missing one; a checkpoint holding only
  // experts is not an error). An expert slice keeps the whole model's router: E is the
  // section's num_experts there. A quantized router's shape is its packing's, not checked.
  void check_routers() {
    const moe_block_spec& b = spec_.moe_block;
    if (b.router.empty() && b.router_bias.empty()) return;
    std::int64_t E = dims_.E;
    for (const char* section : {"moereg.expert_parallel.num_experts", "moereg.expert_slice.num_experts"})
      if (const json::value* n = ckpt_.config().find_path(section); n && n->is_integer()) E = n->as_int();
    std::unordered_map<std::string_view, const passthrough_tensor*> by_name;
    for (const auto& o : out_.others) by_name.emplace(o.canonical, &o);
    auto check = [&](const key_template& key, int l, const std::vector<std::int64_t>& want, const char* what) {
      if (key.empty()) return;
      auto it = by_name.find(key.format({{"layer", std::to_string(l)}}));
      if (it == by_name.end() || it->second->role != quant_role::none) return;
      const tensor_info& t = *it->second->source->info;
      if (t.shape != want)
        problem(it->second->source->file->path() + ": " + printable(t.name) + ": shape " + shape_string(t.shape) + ", expected " + shape_string(want) + " (" + what +
                " of layer " + std::to_string(l) + ": E=" + std::to_string(E) + " experts, H=" + std::to_string(dims_.H) + ")");
    };
    for (int l : out_.dims.moe_layers) {
      check(b.router, l, {E, dims_.H}, "the router");
      check(b.router_bias, l, {E}, "the router's selection bias");
    }
  }

  void finish() {
    out_.expert_dtype = expert_type_.value_or(dtype::BF16);
    out_.mixed_expert_types = mixed_types_;
    auto& others = out_.others;
    std::sort(others.begin(), others.end(), [](const passthrough_tensor& a, const passthrough_tensor& b) { return a.canonical < b.canonical; });
    for (std::size_t i = 1; i < others.size(); ++i)
      if (others[i].canonical == others[i - 1].canonical)
        problem(printable(others[i].source->info->name) + " and " + printable(others[i - 1].source->info->name) +
                " both rename to " + quote(others[i].canonical));
    if (problems_.empty()) return;
    std::string msg = ckpt_.path() + ": " + std::to_string(problems_.size()) + " problem" + (problems_.size() > 1 ? "s" : "") +
                      " reading it as family '" + spec_.name + "' layout '" + layout_.name + "'" +
                      (q().quantized() ? " (quantization: " + q().describe() + ")" : "") + ":";
    // The first ones: a checkpoint read with the wrong config has a problem per tensor, and a
    // thousand lines bury the cause (the first lines usually show it).
    constexpr std::size_t shown = 20;
    for (std::size_t i = 0; i < problems_.size() && i < shown; ++i) msg += "\n  " + problems_[i];
    if (problems_.size() > shown) msg += "\n  ... and " + std::to_string(problems_.size() - shown) + " more";
    throw error(msg);
  }

  const checkpoint& ckpt_;
  const family_spec& spec_;
  const layout_spec& layout_;
  const model_dims& dims_;
  const std::string config_where_;
  const std::string config_name_;  // "config.json", or a .gguf's metadata (there is no config.json)
  const std::set<int> moe_;
  const std::size_t n_entries_;
  int layer_count_ = 0, extra_ = 0;
  std::vector<key_template> data_keys_;
  std::vector<entry_companions> comps_;
  std::vector<std::map<int, std::map<int, const checkpoint::entry*>>> found_;  // [entry][layer][expert or -1]
  std::optional<dtype> expert_type_;                       // the first expert's
  std::map<const expert_entry*, const tensor_info*> entry_type_;  // per entry: a tensor of its most common type
  std::optional<std::set<std::string>> f32_as_stored_;  // read on first use
  std::set<std::string> misshapen_;  // expert tensors of the wrong shape or type (reported once, not also as missing)
  bool mixed_types_ = false;                                 // entries of different types
  std::vector<std::string> problems_;
  std::map<std::pair<std::size_t, std::string>, std::vector<const checkpoint::entry*>> split_found_;  // (split, canonical) -> parts
  decoded_checkpoint out_;
};

}  // namespace

decoded_checkpoint decode_checkpoint(const checkpoint& ckpt, const family_spec& spec, const layout_spec& layout,
                                     const model_dims& dims) {
  return decoder(ckpt, spec, layout, dims).run();
}

const layout_spec& detect_layout(const checkpoint& ckpt, const family_spec& spec, const model_dims& dims) {
  if (dims.moe_layers.empty()) throw error(ckpt.path() + ": " + config_name(ckpt) + " gives no MoE layers for family " + spec.name);
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
            throw error(ckpt.path() + ": " + quote(ea.key.format(c)) + " has shape " +
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
                names(by_keys) + " of family '" + spec.name + "' but not their shapes for " + dims.explain({"E", "H", "I"}) +
                " (does " + config_name(ckpt) + " belong to these weights?)");
  std::string expect;
  for (const auto& layout : spec.layouts) {
    captures c{{"layer", std::to_string(l)}, {"expert", "0"}};
    expect += "\n  " + layout.name + ": " + data_key(layout.experts.front(), q).format(c);
  }
  throw error(ckpt.path() + ": no layout of family '" + spec.name + "' matches its tensors; looked for:" + expect);
}

}  // namespace moereg
