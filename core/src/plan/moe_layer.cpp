// SPDX-License-Identifier: Apache-2.0
#include "moereg/plan/moe_layer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "moereg/base/error.h"
#include "moereg/exec/dequantize_view.h"
#include "moereg/exec/executor.h"
#include "moereg/gguf/ggml_type.h"
#include "moereg/quant/scale_grid.h"
#include "moereg/safetensors/tensor_info.h"
#include "moereg/tensor/tensor_view.h"

namespace moereg {

namespace {

moereg_tensor_view view_of(const std::byte* data, dtype t, const std::vector<std::int64_t>& shape) {
  return contiguous_view(data, t, shape);
}

// The tensor `t` names in `layer`, or null when the family declares none or (with
// `optional`) the checkpoint has none.
const passthrough_tensor* find_other(const decoded_checkpoint& d, const key_template& t, int layer, bool optional = false) {
  if (t.empty()) return nullptr;
  std::string name = t.format({{"layer", std::to_string(layer)}});
  // A quantized weight is found by the name of the weight it stands for (GPTQ's
  // "...gate_proj.qweight" for "...gate_proj.weight").
  for (const auto& o : d.others)
    if (o.canonical == name || (o.role == quant_role::data && o.quant_key == name)) return &o;
  if (optional) return nullptr;
  throw error(d.ckpt->path() + ": layer " + std::to_string(layer) + ": the family declares '" + name +
              "' but the checkpoint has no such tensor (in layout '" + d.layout->name + "' naming)");
}



// Whether a layer's experts are GGUF blocks (some expert tensor stored as ggml blocks).
bool ggml_experts(const decoded_checkpoint& d, int layer) {
  const auto it = d.experts.find(layer);
  if (it == d.experts.end() || it->second.empty()) return false;
  for (const matrix_view& v : it->second[0])
    if (v.source && v.source->info->ggml_blocks) return true;
  return false;
}

// One scale element of a strided scale view, widened to float.
float scale_at(const matrix_view& s, std::int64_t r, std::int64_t c) {
  return scale_as_f32(s.source->info->name, s.type, s.at(r, c), r * s.cols + c, s.cols);
}

// The {rows, cols} per scale one block size must give every piece of the layer: where some
// piece has several scale rows (columns), their block size; where none has, any size at least
// the largest matrix (a per-channel or per-tensor axis). Throws when the pieces disagree.
std::array<std::int64_t, 2> common_blocks(const std::vector<std::array<piece_scales, 3>>& scales, const std::string& where) {
  std::array<std::int64_t, 2> block{0, 0}, largest{1, 1};
  for (const auto& e : scales)
    for (const piece_scales& p : e) {
      const std::int64_t n[2] = {p.grid.grid_rows(), p.grid.grid_cols()};
      const std::int64_t b[2] = {p.grid.block_rows, p.grid.block_cols};
      const std::int64_t len[2] = {p.grid.rows, p.grid.cols};
      for (int a = 0; a < 2; ++a) {
        largest[static_cast<std::size_t>(a)] = std::max(largest[static_cast<std::size_t>(a)], len[a]);
        if (n[a] > 1 && block[static_cast<std::size_t>(a)] && block[static_cast<std::size_t>(a)] != b[a])
          throw error(where + ": expert scales use different blocks (" + p.grid.describe() + " and " +
                      std::to_string(block[0]) + "x" + std::to_string(block[1]) +
                      "); the backends take one block size per layer");
        if (n[a] > 1) block[static_cast<std::size_t>(a)] = b[a];
      }
    }
  for (std::size_t a = 0; a < 2; ++a)
    if (!block[a]) block[a] = largest[a];
  return block;
}

// A quantized pass-through weight (the shared expert's) as bf16, rows x cols, via core/quant
// (the same dequantization as `convert --dtype bf16`): the backend ABI carries scales for the
// routed experts only.
std::vector<std::uint16_t> dequantized_shared(const decoded_checkpoint& d, const passthrough_tensor& p,
                                              std::int64_t& rows, std::int64_t& cols) {
  const checkpoint::entry& w = *p.source;
  const quant_format& q = d.quant;
  if (!p.scale || w.info->shape.size() != 2)
    throw error(w.info->name + ": quantized shared-expert weight (" + q.describe() +
                "); moe run dequantizes [out, in] matrices with their scale only");
  const checkpoint::entry& s = *p.scale;
  const std::vector<std::int64_t>& ws = w.info->shape;
  matrix_view v{&w, 0, ws[0], ws[1], ws[1], 1, w.info->type};
  if (q.stored_transposed()) v = {&w, 0, ws[1], ws[0], 1, ws[1], w.info->type};  // GPTQ [K/8, N] seen as [N, K/8]
  rows = v.rows;
  cols = v.cols * q.pack();
  piece_scales ps;
  if (q.scheme == quant_scheme::fp8) {
    ps.grid = classify_fp8_scale(s.info->name, ws, s.info->shape, q.block);
    if (ps.grid.kind == scale_kind::per_tensor) ps.grid.block_rows = ps.grid.rows = ws[0];
    ps.grid.batch = 1;
  } else {
    ps.grid = q.group_grid_for(rows, cols);
  }
  const std::int64_t gr = ps.grid.grid_rows(), gc = ps.grid.grid_cols();
  if (q.scheme != quant_scheme::fp8) {
    const std::vector<std::int64_t> want = q.stored_transposed() ? std::vector<std::int64_t>{gc, gr} : std::vector<std::int64_t>{gr, gc};
    if (s.info->shape != want)
      throw error(s.info->name + ": scale shape " + shape_string(s.info->shape) + ", expected " + shape_string(want) + " (" +
                  ps.grid.describe() + " over the " + std::to_string(rows) + "x" + std::to_string(cols) + " matrix of " +
                  w.info->name + ")");
  }
  ps.scale = q.stored_transposed() ? matrix_view{&s, 0, gr, gc, 1, gr, s.info->type} : matrix_view{&s, 0, gr, gc, gc, 1, s.info->type};
  std::vector<std::uint16_t> out(static_cast<std::size_t>(rows * cols));
  dequantize_scratch scratch;
  dequantize_view(v, ps, q, out.data(), scratch);
  return out;
}

// Builds one moe_layer in phases: the routed experts' weights, their scales when quantized,
// the shared expert, the routing.
class layer_loader {
 public:
  layer_loader(const decoded_checkpoint& d, int layer, const std::vector<std::array<matrix_view, 3>>& experts, moe_layer& out)
      : d_(d), layer_(layer), experts_(experts), out_(out), E_(d.dims.E), H_(d.dims.H), I_(d.dims.I),
        es_(dtype_size(d.expert_dtype)), where_(d.ckpt->path() + ": layer " + std::to_string(layer)) {}

  // w13 [E, 2I, H] and w2 [E, H, I]: mapped where the checkpoint stores them so, else packed.
  void expert_weights() {
    if (ggml_experts(d_, layer_)) {
      ggml_weights();
      return;
    }
    moereg_moe_weights& w = out_.weights;
    const std::byte* w13 = fused_in_place(piece::gate, piece::up, 2 * I_);
    const bool w13_mapped = w13 != nullptr;
    if (!w13) w13 = pack({piece::gate, piece::up}, 2 * I_, units(H_));
    const std::byte* w2 = fused_in_place(piece::down, piece::down, H_);
    const bool w2_mapped = w2 != nullptr;
    if (!w2) w2 = pack({piece::down}, H_, units(I_));
    out_.describe = std::string("w13 ") + (w13_mapped ? "mapped" : "packed") + ", w2 " + (w2_mapped ? "mapped" : "packed") +
                    " (layout " + d_.layout->name + ")";
    w.num_experts = E_;
    w.hidden = H_;
    w.intermediate = I_;
    if (four_bit()) {
      w.w13 = nibble_view(w13, 2 * I_, H_);
      w.w2 = nibble_view(w2, H_, I_);
      w.weight_quant = d_.quant.scheme == quant_scheme::mxfp4 ? MOEREG_WEIGHT_QUANT_MXFP4 : MOEREG_WEIGHT_QUANT_INT4;
    } else {
      w.w13 = view_of(w13, d_.expert_dtype, {E_, 2 * I_, H_});
      w.w2 = view_of(w2, d_.expert_dtype, {E_, H_, I_});
    }
  }

  // GGUF experts as stored (weight_quant GGML): U8 rows of each matrix's bytes, its ggml
  // type in quant_types; F16 where llama.cpp left a tensor unquantized (a down projection
  // whose rows are no whole number of blocks) travels as ggml type F16. gate and up share w13,
  // so they must share a type.
  void ggml_weights() {
    moereg_moe_weights& w = out_.weights;
    const matrix_view& g = experts_[0][static_cast<std::size_t>(piece::gate)];
    const matrix_view& u = experts_[0][static_cast<std::size_t>(piece::up)];
    const matrix_view& dn = experts_[0][static_cast<std::size_t>(piece::down)];
    const std::uint32_t t13 = ggml_id(g), t2 = ggml_id(dn);
    if (ggml_id(u) != t13)
      throw error(where_ + ": gate " + g.source->info->name + " is " + storage_type_name(*g.source->info) + " but up " +
                  u.source->info->name + " is " + storage_type_name(*u.source->info) +
                  "; the backends take one type for gate and up (convert it with --dtype bf16 first)");
    const std::byte* w13 = fused_in_place(piece::gate, piece::up, 2 * I_);
    const bool w13_mapped = w13 != nullptr;
    if (!w13) w13 = pack({piece::gate, piece::up}, 2 * I_, g.cols, g.element_size());
    const std::byte* w2 = fused_in_place(piece::down, piece::down, H_);
    const bool w2_mapped = w2 != nullptr;
    if (!w2) w2 = pack({piece::down}, H_, dn.cols, dn.element_size());
    w.num_experts = E_;
    w.hidden = H_;
    w.intermediate = I_;
    w.w13 = view_of(w13, dtype::U8, {E_, 2 * I_, g.cols * static_cast<std::int64_t>(g.element_size())});
    w.w2 = view_of(w2, dtype::U8, {E_, H_, dn.cols * static_cast<std::int64_t>(dn.element_size())});
    w.weight_quant = MOEREG_WEIGHT_QUANT_GGML;
    w.quant_types = MOEREG_GGML_TYPES(t13, t2);
    out_.describe = std::string("w13 ") + (w13_mapped ? "mapped" : "packed") + " " + storage_type_name(*g.source->info) + ", w2 " +
                    (w2_mapped ? "mapped" : "packed") + " " + storage_type_name(*dn.source->info) + " (layout " + d_.layout->name +
                    ", ggml blocks read as stored)";
  }

  static std::uint32_t ggml_id(const matrix_view& v) {
    if (v.source->info->ggml_blocks) return *v.source->info->ggml_blocks;
    if (auto t = ggml_type_for(v.type)) return static_cast<std::uint32_t>(*t);
    throw error(v.source->info->name + ": " + std::string(dtype_name(v.type)) + " has no ggml type");
  }

  // Quantized experts stay quantized (the backend dequantizes on the fly); their scales are
  // gathered into the ABI's F32 [E, scale rows, scale cols] tensors, gate and up each on
  // their own grid (4-bit schemes: one scale row per weight row, {1, group} blocks).
  void expert_scales() {
    if (!d_.quant.quantized()) return;
    const auto sit = d_.expert_scales.find(layer_);
    if (sit == d_.expert_scales.end() || sit->second.size() != static_cast<std::size_t>(E_))
      throw error(where_ + ": quantized experts without their scales");
    const auto& scales = sit->second;
    const auto block = common_blocks(scales, where_);
    const std::int64_t g_rows = (I_ + block[0] - 1) / block[0], h_cols = (H_ + block[1] - 1) / block[1];
    const std::int64_t d_rows = (H_ + block[0] - 1) / block[0], i_cols = (I_ + block[1] - 1) / block[1];
    moereg_moe_weights& w = out_.weights;
    w.w13_scale = view_of(gather(scales, block, {{piece::gate, g_rows}, {piece::up, g_rows}}, 2 * g_rows, h_cols), dtype::F32,
                          {E_, 2 * g_rows, h_cols});
    w.w2_scale = view_of(gather(scales, block, {{piece::down, d_rows}}, d_rows, i_cols), dtype::F32, {E_, d_rows, i_cols});
    w.scale_block[0] = block[0];
    w.scale_block[1] = block[1];
    out_.describe += four_bit() ? ", " + d_.quant.describe() + " read as stored, F32 scales per " + std::to_string(block[1]) + " inputs"
                                : ", FP8 with " + std::to_string(block[0]) + "x" + std::to_string(block[1]) + " block scales";
  }

  // The shared expert, when the family declares one: gate and up packed as one [2Is, H].
  void shared_expert() {
    const moe_block_spec& b = d_.spec->moe_block;
    // A model may have none (DeepSeek-V2 with n_shared_experts null: transformers builds no
    // shared expert); all three or none.
    const passthrough_tensor* sg = find_other(d_, b.shared_gate_proj, layer_, true);
    const passthrough_tensor* su = find_other(d_, b.shared_up_proj, layer_, true);
    const passthrough_tensor* sd = find_other(d_, b.shared_down_proj, layer_, true);
    if (!sg && !su && !sd) {
      // None here while another MoE layer has one is a damaged checkpoint, not such a model.
      for (int l : d_.dims.moe_layers)
        if (l != layer_ && find_other(d_, b.shared_gate_proj, l, true))
          throw error(d_.ckpt->path() + ": layer " + std::to_string(layer_) + " has no shared expert ('" +
                      b.shared_gate_proj.format({{"layer", std::to_string(layer_)}}) + "' and its up and down projections) but layer " +
                      std::to_string(l) + " has one; expected every MoE layer to have one or none");
      return;
    }
    if (!b.shared_gate_proj.empty() && !sg) find_other(d_, b.shared_gate_proj, layer_);  // throws, naming the one missing
    if (!b.shared_up_proj.empty() && !su) find_other(d_, b.shared_up_proj, layer_);
    if (!b.shared_down_proj.empty() && !sd) find_other(d_, b.shared_down_proj, layer_);
    if (!sg || !su || !sd) return;
    moereg_moe_weights& w = out_.weights;
    std::int64_t Is = sg->source->info->shape[0];
    const bool f8_as_stored = f8_shared_scales(*sg, *su, *sd);
    if (!f8_as_stored && (sg->role == quant_role::data || su->role == quant_role::data || sd->role == quant_role::data)) {
      // Any other quantized shared expert: dequantized to bf16 here (the ABI carries scales for
      // an F8_E4M3 shared expert on the routed experts' grid only).
      std::int64_t gr = 0, gc = 0, dr = 0, dc = 0;
      auto gate = dequantized_shared(d_, *sg, gr, gc), up = dequantized_shared(d_, *su, gr, gc), down = dequantized_shared(d_, *sd, dr, dc);
      Is = gr;
      const std::uint64_t half = gate.size() * 2, down_bytes = down.size() * 2;
      std::byte* buf = own(2 * half + down_bytes);
      std::memcpy(buf, gate.data(), half);
      std::memcpy(buf + half, up.data(), half);
      std::memcpy(buf + 2 * half, down.data(), down_bytes);
      w.shared_w13 = view_of(buf, dtype::BF16, {2 * Is, H_});
      w.shared_w2 = view_of(buf + 2 * half, dtype::BF16, {H_, Is});
      out_.describe += ", shared expert dequantized to BF16";
    } else {  // as stored: BF16, F16, F32, or F8_E4M3 with the scales set above
      const std::uint64_t half = sg->source->info->nbytes();
      std::byte* buf = own(2 * half);
      std::memcpy(buf, sg->source->data(), half);
      std::memcpy(buf + half, su->source->data(), half);
      w.shared_w13 = view_of(buf, sg->source->info->type, {2 * Is, H_});
      w.shared_w2 = view_of(sd->source->data(), sd->source->info->type, {H_, Is});
      if (f8_as_stored) out_.describe += ", shared expert F8_E4M3 as stored";
    }
    w.shared_intermediate = Is;
    if (const passthrough_tensor* gate = find_other(d_, b.shared_gate, layer_))
      w.shared_gate = view_of(gate->source->data(), gate->source->info->type, {1, H_});
  }

  // An F8_E4M3 shared expert beside F8_E4M3 routed experts, each matrix's block scales on
  // their grid (DeepSeek-V3 and R1 as shipped): its scales gathered into the ABI's views (API
  // 3), so that it goes to the backend as stored, half the bytes of a bf16 copy. Returns false,
  // touching nothing, for anything else.
  bool f8_shared_scales(const passthrough_tensor& sg, const passthrough_tensor& su, const passthrough_tensor& sd) {
    moereg_moe_weights& w = out_.weights;
    if (d_.quant.scheme != quant_scheme::fp8 || w.w13.dtype != MOEREG_DTYPE_F8_E4M3 || w.scale_block[0] <= 0) return false;
    const std::array<std::int64_t, 2> block{w.scale_block[0], w.scale_block[1]};
    const std::int64_t Is = sg.source->info->shape[0];
    if (su.source->info->shape != sg.source->info->shape || sg.source->info->shape != std::vector<std::int64_t>{Is, H_} ||
        sd.source->info->shape != std::vector<std::int64_t>{H_, Is})
      return false;
    std::vector<std::array<piece_scales, 3>> ps(1);  // one "expert", pieces in piece order
    const passthrough_tensor* parts[3] = {&sg, &su, &sd};
    for (std::size_t i = 0; i < 3; ++i) {
      const passthrough_tensor& p = *parts[i];
      const checkpoint::entry& m = *p.source;
      if (p.role != quant_role::data || !p.scale || m.info->type != dtype::F8_E4M3) return false;
      scale_grid g = classify_fp8_scale(p.scale->info->name, m.info->shape, p.scale->info->shape, d_.quant.block);
      if (g.kind == scale_kind::per_tensor) return false;
      // The same coverage as the ABI's grid: as many scale rows and columns, and where there
      // are several, the same block.
      if (g.grid_rows() != (g.rows + block[0] - 1) / block[0] || (g.grid_rows() > 1 && g.block_rows != block[0])) return false;
      if (g.grid_cols() != (g.cols + block[1] - 1) / block[1] || (g.grid_cols() > 1 && g.block_cols != block[1])) return false;
      ps[0][i] = {{p.scale, 0, g.grid_rows(), g.grid_cols(), g.grid_cols(), 1, p.scale->info->type}, g};
    }
    const std::int64_t g_rows = ps[0][0].grid.grid_rows(), h_cols = ps[0][0].grid.grid_cols();
    const std::int64_t d_rows = ps[0][2].grid.grid_rows(), i_cols = ps[0][2].grid.grid_cols();
    w.shared_w13_scale = view_of(gather(ps, block, {{piece::gate, g_rows}, {piece::up, g_rows}}, 2 * g_rows, h_cols),
                                 dtype::F32, {2 * g_rows, h_cols});
    w.shared_w2_scale = view_of(gather(ps, block, {{piece::down, d_rows}}, d_rows, i_cols), dtype::F32, {d_rows, i_cols});
    return true;
  }

  // The family's routing with this checkpoint's values, range-checked: numbers that route
  // differently from the model would still give numbers.
  void routing() {
    const json::value& cfg = d_.ckpt->config();
    const routing_spec& r = d_.spec->routing;
    if (!r.declared)
      throw error(d_.spec->manifest_path + ": family '" + d_.spec->name + "'" +
                  (d_.spec->model_type.empty() ? "" : " (" + d_.spec->model_type + ")") +
                  " declares no 'routing' (scoring, renormalize, scaling...), so moe run cannot route its tokens");
    const std::string config_path = d_.ckpt->config_path().empty() ? d_.ckpt->path() : d_.ckpt->config_path();
    auto number = [&](const config_value& v, double builtin) { return required_value(v, cfg, config_path, builtin); };
    moereg_routing_params& rp = out_.routing;
    rp.num_experts = static_cast<std::int32_t>(E_);
    rp.top_k = static_cast<std::int32_t>(d_.dims.K);
    rp.scoring = r.scoring == "sigmoid" ? MOEREG_SCORING_SIGMOID : MOEREG_SCORING_SOFTMAX;
    rp.logits_in_f32 = r.logits_in_f32 ? 1 : 0;
    rp.renormalize = number(r.renormalize, 0) != 0 ? 1 : 0;
    rp.renorm_eps = static_cast<float>(r.renorm_eps);
    const double scaling = number(r.scaling, 1.0);
    rp.routed_scaling_factor = static_cast<float>(scaling);
    bool groups = r.group_score != "none";
    if (groups && !r.groups_when_field.empty()) {
      const json::value* v = cfg.find_path(r.groups_when_field);
      groups = v && v->is_string() && v->as_string() == r.groups_when_equals;
    }
    const double n_group = groups ? number(r.n_group, 1) : 1, topk_group = groups ? number(r.topk_group, 1) : 1;
    if (!d_.spec->dims.count("K"))
      throw error(d_.spec->manifest_path + ": dims has no K (experts per token); moe run needs it, e.g. `K: num_experts_per_tok`");
    if (d_.dims.K < 1 || d_.dims.K > E_)
      throw error(config_path + ": " + d_.dims.explain({"K"}) + " experts per token, expected 1 to E = " + std::to_string(E_));
    if (!std::isfinite(scaling) || scaling <= 0)
      throw error(config_path + ": routing scaling " + std::to_string(scaling) + " (" + r.scaling.describe() +
                  "), expected a positive number");
    if (n_group < 1 || n_group != std::floor(n_group) || static_cast<std::int64_t>(n_group) > E_ ||
        E_ % static_cast<std::int64_t>(n_group) != 0)
      throw error(config_path + ": routing n_group " + std::to_string(n_group) + " (" + r.n_group.describe() +
                  "), expected a whole number that divides E = " + std::to_string(E_));
    if (topk_group < 1 || topk_group != std::floor(topk_group) || topk_group > n_group)
      throw error(config_path + ": routing topk_group " + std::to_string(topk_group) + " (" + r.topk_group.describe() +
                  "), expected a whole number from 1 to n_group = " + std::to_string(static_cast<std::int64_t>(n_group)));
    rp.n_group = static_cast<std::int32_t>(n_group);
    rp.topk_group = static_cast<std::int32_t>(topk_group);
    rp.group_score = !groups ? MOEREG_GROUP_SCORE_NONE : r.group_score == "top2_sum" ? MOEREG_GROUP_SCORE_TOP2_SUM : MOEREG_GROUP_SCORE_MAX;
    const moe_block_spec& b = d_.spec->moe_block;
    const passthrough_tensor* router = find_other(d_, b.router, layer_);
    if (!router) throw error(d_.spec->manifest_path + ": moe_block.router is not declared; moe run needs the router weight");
    // Checked here, where the file and tensor are known (the router checks the view again, and
    // could name only the plugin's routing).
    auto expect_shape = [&](const passthrough_tensor& t, const std::vector<std::int64_t>& want, const std::string& what) {
      if (t.source->info->shape != want)
        throw error(t.source->file->path() + ": " + t.source->info->name + ": shape " + shape_string(t.source->info->shape) +
                    ", expected " + shape_string(want) + " (" + what + " of layer " + std::to_string(layer_) + ", E = " +
                    std::to_string(E_) + " experts, H = " + std::to_string(H_) + ")");
    };
    expect_shape(*router, {E_, H_}, "the router");
    rp.router = view_of(router->source->data(), router->source->info->type, router->source->info->shape);
    if (const passthrough_tensor* bias = find_other(d_, b.router_bias, layer_)) {
      expect_shape(*bias, {E_}, "the router's selection bias");
      rp.router_bias = view_of(bias->source->data(), bias->source->info->type, bias->source->info->shape);
    }
  }

 private:
  // 4-bit experts (GPTQ, compressed-tensors int4, MXFP4) travel as their packed bytes, rows
  // of `units` storage units (8 or 2 elements each) along K; everything else one unit per element.
  bool four_bit() const { return d_.quant.packed(); }
  std::int64_t units(std::int64_t k) const { return four_bit() ? (k + d_.quant.pack() - 1) / d_.quant.pack() : k; }

  std::byte* own(std::uint64_t bytes) {
    out_.owned.push_back(std::make_unique<std::byte[]>(bytes));
    out_.packed_bytes += bytes;
    return out_.owned.back().get();
  }

  // The start of [E, rows, H] when gate (and up) of every expert already sit so in one tensor.
  const std::byte* fused_in_place(piece first, piece second, std::int64_t rows) const {
    const matrix_view& g0 = experts_[0][static_cast<std::size_t>(first)];
    if (!g0.contiguous()) return nullptr;
    for (std::int64_t e = 0; e < E_; ++e) {
      const matrix_view& a = experts_[static_cast<std::size_t>(e)][static_cast<std::size_t>(first)];
      if (a.source != g0.source || !a.contiguous() || a.offset != g0.offset + static_cast<std::uint64_t>(e * rows * a.cols))
        return nullptr;
      if (second != first) {
        const matrix_view& b = experts_[static_cast<std::size_t>(e)][static_cast<std::size_t>(second)];
        if (b.source != g0.source || !b.contiguous() || b.offset != a.offset + static_cast<std::uint64_t>(a.rows * a.cols))
          return nullptr;
      }
    }
    return g0.at(0, 0);
  }

  // es: bytes per unit, the experts' dtype's unless given (GGUF layers mix types).
  const std::byte* pack(const std::vector<piece>& pieces, std::int64_t rows, std::int64_t cols, std::size_t es = 0) {
    if (!es) es = es_;
    std::byte* buf = own(static_cast<std::uint64_t>(E_ * rows * cols) * es);
    for (std::int64_t e = 0; e < E_; ++e) {
      std::int64_t r0 = 0;
      for (piece p : pieces) {
        const matrix_view& v = experts_[static_cast<std::size_t>(e)][static_cast<std::size_t>(p)];
        copy_matrix(v, buf + static_cast<std::size_t>((e * rows + r0) * cols) * es, cols, 1);
        r0 += v.rows;
      }
    }
    return buf;
  }

  // U8 rows of ceil(K/2) bytes inside rows of whole units (an int32 unit's bytes hold its
  // eight nibbles in element order, low first, as the ABI's U8 rows do).
  moereg_tensor_view nibble_view(const std::byte* data, std::int64_t rows, std::int64_t k) const {
    moereg_tensor_view v = view_of(data, dtype::U8, {E_, rows, (k + 1) / 2});
    const auto row_bytes = static_cast<std::int64_t>(units(k) * static_cast<std::int64_t>(es_));
    v.strides[1] = row_bytes;
    v.strides[0] = rows * row_bytes;
    return v;
  }

  // The scale rows of `parts` of every expert in `scales`, one F32 [experts, rows, cols] tensor.
  std::byte* gather(const std::vector<std::array<piece_scales, 3>>& scales, const std::array<std::int64_t, 2>& block,
                    const std::vector<std::pair<piece, std::int64_t>>& parts, std::int64_t rows, std::int64_t cols) {
    const auto experts = static_cast<std::int64_t>(scales.size());
    std::byte* buf = own(static_cast<std::uint64_t>(experts * rows * cols) * 4);
    auto* f = reinterpret_cast<float*>(buf);
    for (std::int64_t e = 0; e < experts; ++e) {
      std::int64_t r0 = 0;
      for (auto [pc, n] : parts) {
        const piece_scales& ps = scales[static_cast<std::size_t>(e)][static_cast<std::size_t>(pc)];
        if (ps.scale.rows != n || ps.scale.cols != cols)
          throw error(where_ + ": expert " + std::to_string(e) + " scales " + ps.scale.source->info->name + " hold " +
                      std::to_string(ps.scale.rows) + "x" + std::to_string(ps.scale.cols) + " blocks, expected " +
                      std::to_string(n) + "x" + std::to_string(cols) + " for " + std::to_string(block[0]) + "x" +
                      std::to_string(block[1]) + " blocks");
        for (std::int64_t r = 0; r < n; ++r)
          for (std::int64_t c = 0; c < cols; ++c) f[(e * rows + r0 + r) * cols + c] = scale_at(ps.scale, r, c);
        r0 += n;
      }
    }
    return buf;
  }

  const decoded_checkpoint& d_;
  int layer_;
  const std::vector<std::array<matrix_view, 3>>& experts_;
  moe_layer& out_;
  std::int64_t E_, H_, I_;
  std::size_t es_;
  std::string where_;
};

}  // namespace

std::unique_ptr<moe_layer> load_moe_layer(const decoded_checkpoint& d, int layer) {
  const auto start = std::chrono::steady_clock::now();
  auto it = d.experts.find(layer);
  if (it == d.experts.end()) {
    std::string layers;
    for (const auto& [l, _] : d.experts) layers += (layers.empty() ? "" : ", ") + std::to_string(l);
    throw error(d.ckpt->path() + ": layer " + std::to_string(layer) + " is not a MoE layer of this checkpoint (its MoE layers: " +
                (layers.empty() ? std::string("none") : layers) + ")");
  }
  if (d.mixed_expert_types && !ggml_experts(d, layer))  // the backends take one type for w13 and w2 (ggml: one each)
    throw error(d.ckpt->path() + ": layer " + std::to_string(layer) +
                ": its expert tensors are of different types; convert it with --dtype bf16 first");
  auto out = std::make_unique<moe_layer>();
  out->layer = layer;
  layer_loader load(d, layer, it->second, *out);
  load.expert_weights();
  load.expert_scales();
  load.shared_expert();
  load.routing();
  out->load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace moereg
