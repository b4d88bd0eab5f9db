#include "moereg/plan/conversion_plan.h"

#include <algorithm>
#include <set>
#include <unordered_map>

#include "moereg/base/error.h"

namespace moereg {

namespace {

std::string describe_view(const matrix_view& v) {
  std::string s = v.source->info->name;
  bool whole = v.offset == 0 && v.nbytes() == v.source->info->nbytes() && v.contiguous();
  if (!whole) {
    s += "[";
    if (v.source->info->shape.size() == 3) {
      std::int64_t per = v.source->info->shape[1] * v.source->info->shape[2];
      s += std::to_string(static_cast<std::int64_t>(v.offset) / per) + ", ";
    }
    s += "rows " + std::to_string(v.rows) + (v.row_stride == 1 ? " (transposed)" : "") + "]";
  }
  return s;
}

}  // namespace

conversion_plan plan_conversion(const decoded_checkpoint& src, const layout_spec& target, const plan_options& options) {
  conversion_plan plan;
  plan.source = &src;
  plan.target = &target;
  const model_dims& d = src.dims;
  std::int64_t first = 0, last = d.E;
  if (options.experts) {
    first = options.experts->first;
    last = options.experts->second;
    if (first < 0 || last > d.E || first >= last)
      throw error("--experts " + std::to_string(first) + ":" + std::to_string(last) + " is not a non-empty range within 0:" +
                  std::to_string(d.E) + " (E=" + std::to_string(d.E) + ")");
  }
  for (const auto& [layer_key, experts_of_layer] : src.experts) {
    // Named copies: lambdas may not capture structured bindings before C++20 compilers catch up (clang < 16).
    const int layer = layer_key;
    const auto& experts = experts_of_layer;
    for (const auto& e : target.experts) {
      std::int64_t rows_total = 0, cols = 0;
      for (piece p : e.pieces) {
        const matrix_view& v = experts[0][static_cast<std::size_t>(p)];
        rows_total += v.rows;
        cols = v.cols;
      }
      auto make = [&](std::int64_t expert_in_key) {
        output_tensor o;
        o.is_expert = true;
        o.entry = &e;
        o.layer = layer;
        o.rows_total = rows_total;
        o.cols = cols;
        captures c{{"layer", std::to_string(layer)}, {"expert", std::to_string(expert_in_key)}};
        o.spec.name = e.key.format(c);
        o.spec.type = src.expert_dtype;
        if (e.stacked) o.spec.shape.push_back(last - first);
        if (e.transpose) o.spec.shape.insert(o.spec.shape.end(), {cols, rows_total});
        else o.spec.shape.insert(o.spec.shape.end(), {rows_total, cols});
        return o;
      };
      auto slot = [&](std::int64_t x) {
        std::vector<matrix_view> pieces;
        for (piece p : e.pieces) pieces.push_back(experts[static_cast<std::size_t>(x)][static_cast<std::size_t>(p)]);
        return pieces;
      };
      if (e.stacked) {
        output_tensor o = make(0);
        for (std::int64_t x = first; x < last; ++x) o.slots.push_back(slot(x));
        std::string parts;
        for (const auto& v : o.slots.front()) parts += (parts.empty() ? "" : " + ") + describe_view(v);
        o.origin = "stack experts " + std::to_string(first) + ".." + std::to_string(last - 1) + " of " +
                   (e.pieces.size() > 1 ? "concat(" + parts + ")" : parts) + (e.transpose ? ", transposed" : "");
        plan.outputs.push_back(std::move(o));
      } else {
        for (std::int64_t x = first; x < last; ++x) {
          output_tensor o = make(x);
          o.slots.push_back(slot(x));
          std::string parts;
          for (const auto& v : o.slots.front()) parts += (parts.empty() ? "" : " + ") + describe_view(v);
          o.origin = parts + (e.transpose ? ", transposed" : "");
          plan.outputs.push_back(std::move(o));
        }
      }
    }
  }
  for (const auto& p : src.others) {
    output_tensor o;
    o.spec = {from_canonical(target, p.canonical), p.source->info->type, p.source->info->shape};
    o.source = p.source;
    o.decode_hook = p.decode_hook;
    for (const auto& tr : target.transforms)
      if (tr.key.match(o.spec.name)) o.encode_hook = tr.hook;
    o.origin = p.source->info->name;
    if (!p.decode_hook.empty()) o.origin += " (hook " + p.decode_hook + " decode)";
    if (!o.encode_hook.empty()) o.origin += " (hook " + o.encode_hook + " encode)";
    plan.outputs.push_back(std::move(o));
  }
  // Expert keys of the target that a rename or pass-through would also produce: a collision.
  std::unordered_map<std::string_view, std::size_t> seen;
  std::vector<std::string> problems;
  for (std::size_t i = 0; i < plan.outputs.size(); ++i) {
    auto [it, fresh] = seen.emplace(plan.outputs[i].spec.name, i);
    if (!fresh)
      problems.push_back("output tensor '" + plan.outputs[i].spec.name + "' would be written twice (from " +
                         plan.outputs[it->second].origin + " and from " + plan.outputs[i].origin + ")");
  }
  if (!problems.empty()) {
    std::string msg = "the conversion to layout '" + target.name + "' is not possible:";
    for (const auto& p : problems) msg += "\n  " + p;
    throw error(msg);
  }
  std::vector<tensor_spec> specs;
  for (const auto& o : plan.outputs) specs.push_back(o.spec);
  sort_like_safetensors(specs);
  std::unordered_map<std::string, std::size_t> rank;
  for (std::size_t i = 0; i < specs.size(); ++i) rank[specs[i].name] = i;
  std::sort(plan.outputs.begin(), plan.outputs.end(),
            [&](const output_tensor& a, const output_tensor& b) { return rank[a.spec.name] < rank[b.spec.name]; });
  for (const auto& o : plan.outputs) plan.total_bytes += o.spec.nbytes();
  return plan;
}

}  // namespace moereg
