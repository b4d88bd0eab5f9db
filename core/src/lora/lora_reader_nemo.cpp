// SPDX-License-Identifier: Apache-2.0
// The NeMo phase of reading an adapter directory: grouped LoRA tensors on the fused experts
// (lora_reader_detail.h).
#include <string>

#include "lora_reader_detail.h"
#include "moereg/base/error.h"

namespace moereg::lora_detail {

void adapter_reader::read_nemo() {
  lora_adapter& a = a_;
  const model_dims& dims = dims_;
  const std::string& C = a.config_path;
  const std::string& W = a.weights_path;
  // NeMo grouped tensors.
  for (const auto& [m, ts] : nemo_) {
    auto cap = gmod_.empty() ? std::nullopt : gmod_.match(m);
    if (!cap) {
      problem(W + ": " + m + ".lora_*: NeMo grouped LoRA tensors on a module that is not the family's experts (expected " +
              (gmod_.empty() ? std::string("none: the family declares no stacked experts") : gmod_.text()) + ")");
      continue;
    }
    int layer = std::stoi(cap->at("layer"));
    if (!layer_ok(layer, m + ".lora_*")) continue;
    for (bool gate_up : {true, false}) {
      const tensor_info* tA = nullptr;
      const tensor_info* tB = nullptr;
      for (const auto& n : nemo_tensors)
        if (n.gate_up == gate_up) {
          auto it = ts.find(n.suffix);
          (n.is_A ? tA : tB) = it == ts.end() ? nullptr : it->second;
        }
      std::string base = m + (gate_up ? ".lora_gate_and_up_" : ".lora_down_");
      if (!tA && !tB) continue;
      if (!tA || !tB) {
        problem(W + ": " + base + (tA ? "B" : "A") + " missing (its pair is present)");
        continue;
      }
      std::vector<piece> pcs = gate_up ? std::vector<piece>{piece::gate, piece::up} : std::vector<piece>{piece::down};
      std::int64_t in = geom(pcs[0], dims).in, out_total = 0;
      for (piece p : pcs) out_total += geom(p, dims).out;
      int rank;
      double alpha;
      expected({m}, &rank, &alpha);
      std::int64_t r_ = tA->shape.size() == 3 ? tA->shape[2] : -1;
      if (tA->shape != std::vector<std::int64_t>{dims.E, in, r_} || tB->shape != std::vector<std::int64_t>{dims.E, r_, out_total}) {
        problem(W + ": " + base + "A " + shape_string(tA->shape) + ", " + base + "B " + shape_string(tB->shape) + " do not fit the base (" +
                dims.describe() + "): expected [E, " + std::to_string(in) + ", r] and [E, r, " + std::to_string(out_total) + "]");
        continue;
      }
      if (r_ != rank) {
        problem(W + ": " + base + "A: rank " + std::to_string(r_) + " disagrees with " + C + " (r or rank_pattern: " + std::to_string(rank) + ")");
        continue;
      }
      const checkpoint::entry* eA = entry_for(tA);
      const checkpoint::entry* eB = entry_for(tB);
      for (std::int64_t e = 0; e < dims.E; ++e) {
        std::int64_t row0 = 0;
        auto ue = static_cast<std::uint64_t>(e);
        for (piece p : pcs) {
          auto g = geom(p, dims);
          lora_pair pr;
          pr.rank = rank;
          pr.alpha = alpha;
          pr.rslora = a.rslora;
          pr.A = view_of(eA, ue * static_cast<std::uint64_t>(in * r_), r_, in, 1, r_);
          pr.B = view_of(eB, ue * static_cast<std::uint64_t>(r_ * out_total) + static_cast<std::uint64_t>(row0), g.out, r_, 1, out_total);
          slot(layer, e)[static_cast<std::size_t>(p)] = pr;
          row0 += g.out;
        }
      }
      any_nemo_ = true;
    }
  }
}

}  // namespace moereg::lora_detail
