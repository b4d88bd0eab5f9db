#include "moereg/plan/moe_layer.h"

#include <chrono>
#include <cstring>

#include "moereg/base/error.h"
#include "moereg/exec/executor.h"
#include "moereg/tensor/tensor_view.h"

namespace moereg {

namespace {

moereg_tensor_view view_of(const std::byte* data, dtype t, const std::vector<std::int64_t>& shape) {
  return contiguous_view(data, t, shape);
}

const passthrough_tensor* find_other(const decoded_checkpoint& d, const key_template& t, int layer) {
  if (t.empty()) return nullptr;
  std::string name = t.format({{"layer", std::to_string(layer)}});
  for (const auto& o : d.others)
    if (o.canonical == name) return &o;
  throw error(d.ckpt->path() + ": layer " + std::to_string(layer) + ": the family declares '" + name +
              "' but the checkpoint has no such tensor (in layout '" + d.layout->name + "' naming)");
}

double config_number(const config_value& v, const json::value& cfg, double fallback) {
  return resolve_value(v, cfg).value_or(fallback);
}

}  // namespace

std::unique_ptr<moe_layer> load_moe_layer(const decoded_checkpoint& d, int layer) {
  auto start = std::chrono::steady_clock::now();
  auto it = d.experts.find(layer);
  if (it == d.experts.end()) {
    std::string layers;
    for (const auto& [l, _] : d.experts) layers += (layers.empty() ? "" : ", ") + std::to_string(l);
    throw error(d.ckpt->path() + ": layer " + std::to_string(layer) + " holds no experts (MoE layers: " + layers + ")");
  }
  auto out = std::make_unique<moe_layer>();
  out->layer = layer;
  const auto& experts = it->second;
  const model_dims& dims = d.dims;
  const std::int64_t E = dims.E, H = dims.H, I = dims.I;
  dtype t = d.expert_dtype;
  std::size_t es = dtype_size(t);

  // w13: mapped when gate and up of every expert already sit as [E, 2I, H] in one tensor.
  auto fused_in_place = [&](piece first, piece second, std::int64_t rows) -> const std::byte* {
    const matrix_view& g0 = experts[0][static_cast<std::size_t>(first)];
    if (!g0.contiguous()) return nullptr;
    for (std::int64_t e = 0; e < E; ++e) {
      const matrix_view& a = experts[static_cast<std::size_t>(e)][static_cast<std::size_t>(first)];
      if (a.source != g0.source || !a.contiguous() || a.offset != g0.offset + static_cast<std::uint64_t>(e * rows * a.cols))
        return nullptr;
      if (second != first) {
        const matrix_view& b = experts[static_cast<std::size_t>(e)][static_cast<std::size_t>(second)];
        if (b.source != g0.source || !b.contiguous() || b.offset != a.offset + static_cast<std::uint64_t>(a.rows * a.cols))
          return nullptr;
      }
    }
    return g0.at(0, 0);
  };
  auto pack = [&](std::vector<piece> pieces, std::int64_t rows, std::int64_t cols) -> const std::byte* {
    std::uint64_t bytes = static_cast<std::uint64_t>(E * rows * cols) * es;
    out->owned.push_back(std::make_unique<std::byte[]>(bytes));
    std::byte* buf = out->owned.back().get();
    for (std::int64_t e = 0; e < E; ++e) {
      std::int64_t r0 = 0;
      for (piece p : pieces) {
        const matrix_view& v = experts[static_cast<std::size_t>(e)][static_cast<std::size_t>(p)];
        copy_matrix(v, buf + static_cast<std::size_t>((e * rows + r0) * cols) * es, cols, 1);
        r0 += v.rows;
      }
    }
    out->packed_bytes += bytes;
    return buf;
  };
  const std::byte* w13 = fused_in_place(piece::gate, piece::up, 2 * I);
  bool w13_mapped = w13 != nullptr;
  if (!w13) w13 = pack({piece::gate, piece::up}, 2 * I, H);
  const std::byte* w2 = fused_in_place(piece::down, piece::down, H);
  bool w2_mapped = w2 != nullptr;
  if (!w2) w2 = pack({piece::down}, H, I);
  out->describe = std::string("w13 ") + (w13_mapped ? "mapped" : "packed") + ", w2 " + (w2_mapped ? "mapped" : "packed") +
                  " (layout " + d.layout->name + ")";

  moereg_moe_weights& w = out->weights;
  w.num_experts = E;
  w.hidden = H;
  w.intermediate = I;
  w.w13 = view_of(w13, t, {E, 2 * I, H});
  w.w2 = view_of(w2, t, {E, H, I});

  const moe_block_spec& b = d.spec->moe_block;
  const passthrough_tensor* sg = find_other(d, b.shared_gate_proj, layer);
  const passthrough_tensor* su = find_other(d, b.shared_up_proj, layer);
  const passthrough_tensor* sd = find_other(d, b.shared_down_proj, layer);
  if (sg && su && sd) {
    std::int64_t Is = sg->source->info->shape[0];
    std::uint64_t half = sg->source->info->nbytes();
    out->owned.push_back(std::make_unique<std::byte[]>(2 * half));
    std::memcpy(out->owned.back().get(), sg->source->data(), half);
    std::memcpy(out->owned.back().get() + half, su->source->data(), half);
    out->packed_bytes += 2 * half;
    w.shared_intermediate = Is;
    w.shared_w13 = view_of(out->owned.back().get(), sg->source->info->type, {2 * Is, H});
    w.shared_w2 = view_of(sd->source->data(), sd->source->info->type, {H, Is});
    if (const passthrough_tensor* gate = find_other(d, b.shared_gate, layer))
      w.shared_gate = view_of(gate->source->data(), gate->source->info->type, {1, H});
  }

  const json::value& cfg = d.ckpt->config();
  const routing_spec& r = d.spec->routing;
  moereg_routing_params& rp = out->routing;
  rp.num_experts = static_cast<std::int32_t>(E);
  rp.top_k = static_cast<std::int32_t>(dims.K);
  rp.scoring = r.scoring == "sigmoid" ? MOEREG_SCORING_SIGMOID : MOEREG_SCORING_SOFTMAX;
  rp.logits_in_f32 = r.logits_in_f32 ? 1 : 0;
  rp.renormalize = config_number(r.renormalize, cfg, 0) != 0 ? 1 : 0;
  rp.renorm_eps = static_cast<float>(r.renorm_eps);
  rp.routed_scaling_factor = static_cast<float>(config_number(r.scaling, cfg, 1.0));
  bool groups = r.group_score != "none";
  if (groups && !r.groups_when_field.empty()) {
    const json::value* v = cfg.find_path(r.groups_when_field);
    groups = v && v->is_string() && v->as_string() == r.groups_when_equals;
  }
  rp.n_group = groups ? static_cast<std::int32_t>(config_number(r.n_group, cfg, 1)) : 1;
  rp.topk_group = groups ? static_cast<std::int32_t>(config_number(r.topk_group, cfg, 1)) : 1;
  rp.group_score = !groups ? MOEREG_GROUP_SCORE_NONE : r.group_score == "top2_sum" ? MOEREG_GROUP_SCORE_TOP2_SUM : MOEREG_GROUP_SCORE_MAX;
  const passthrough_tensor* router = find_other(d, b.router, layer);
  if (!router) throw error(d.spec->manifest_path + ": moe_block.router is not declared; moe run needs the router weight");
  rp.router = view_of(router->source->data(), router->source->info->type, router->source->info->shape);
  if (const passthrough_tensor* bias = find_other(d, b.router_bias, layer))
    rp.router_bias = view_of(bias->source->data(), bias->source->info->type, bias->source->info->shape);
  out->load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace moereg
