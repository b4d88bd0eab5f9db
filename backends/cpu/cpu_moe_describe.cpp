// SPDX-License-Identifier: Apache-2.0
// cpu_moe_describe.cpp - the JSON a cpu layer's describe writes: the kernels and matrix unit it
// chose, the threads and NUMA split, how its weights are held, and its memory (see cpu_moe.h).
#include <cstdio>
#include <string>

#include "cpu_ggml_blocks.h"
#include "cpu_moe.h"
#include "cpu_moe_detail.h"

namespace moereg::cpu {

std::string moe_engine::describe() const {
  // The tile-ordered copy's size, and how much of it the kernel backs with huge pages now.
  auto tile_bytes = [&] {
    return ",\"tile_weight_bytes\":" + std::to_string(tile_memory_.bytes()) +
           ",\"tile_weight_huge_page_bytes\":" + std::to_string(tile_memory_.huge_page_bytes());
  };
  std::string s = "{\"backend\":\"cpu\",\"isa\":\"";
  s += kernels_.isa;
  s += "\",\"threads\":" + std::to_string(pool_->size()) + ",\"pool_spin_us\":" + std::to_string(pool_spin_us_);
  s += ",\"tile\":[" + std::to_string(kernels_.tile_m) + "," + std::to_string(kernels_.tile_n) + "]";
  s += ",\"k_block\":" + std::to_string(k_block_);
  if (kernels_.unit.name) {
    s += std::string(",\"matrix_unit\":\"") + kernels_.unit.name + "\",\"unit_min_rows\":" + std::to_string(kernels_.unit_min_rows) +
         ",\"unit_k_block\":" + std::to_string(kernels_.unit.pass_k > 0 ? kernels_.unit.pass_k : k_block_) +
         ",\"unit_prefetch_steps\":" + std::to_string(kernels_.unit.prefetch_steps) +
         ",\"unit_panels\":" + (kernels_.unit.panels ? "true" : "false");
  } else {
    s += ",\"matrix_unit\":null";
  }
  s += std::string(",\"stream_y\":") + (kernels_.stream_y ? "true" : "false");
  s += ",\"experts\":" + std::to_string(num_experts_) + ",\"shared_expert\":" + (has_shared_ ? "true" : "false");
  s += ",\"numa_nodes\":" + std::to_string(numa_.nodes());
  if (numa_.nodes() > 1) {
    s += ",\"experts_per_node\":[";
    for (int n = 0; n < numa_.nodes(); ++n)
      s += (n ? "," : "") + std::to_string(numa_.expert_begin[static_cast<std::size_t>(n) + 1] - numa_.expert_begin[static_cast<std::size_t>(n)]);
    s += "],\"thread_nodes\":[";
    for (std::size_t t = 0; t < numa_.thread_node.size(); ++t) s += (t ? "," : "") + std::to_string(numa_.thread_node[t]);
    s += "]";
  }
  if (quant_.ggml >= 0) {
    s += std::string(",\"weights\":\"routed experts quantized at create to ggml ") + ggml_elem_name(quant_.ggml) +
         " blocks (scales inside), dequantized per K pass into per-thread panels\"";
    s += std::string(",\"quantize\":\"") + ggml_elem_name(quant_.ggml) + "\",\"quantized_bytes\":" + std::to_string(quant_memory_.bytes());
  } else if (quant_.bits) {
    s += ",\"weights\":\"routed experts quantized at create to int" + std::to_string(quant_.bits) +
         (int_dot_ ? " (symmetric, one F32 scale per row and group of inputs), multiplied in int32 by int8 activations quantized "
                     "per token and group\""
                   : " (symmetric, one F32 scale per row and group of inputs), dequantized per K pass into per-thread panels\"");
    s += ",\"quantize\":\"int" + std::to_string(quant_.bits) + "\",\"quantize_group\":" + std::to_string(quant_.group) +
         ",\"quantized_bytes\":" + std::to_string(quant_memory_.bytes());
    // Which products run: integer tiles (and unit) or the f32/bf16 panels.
    if (int_dot_) {
      s += std::string(",\"int_dot\":\"on\",\"int_dot_isa\":\"") + kernels_.ints.isa + "\",\"int_dot_unit\":" +
           (kernels_.ints.unit.name ? std::string("\"") + kernels_.ints.unit.name + "\"" : std::string("null")) +
           ",\"int_unit_min_rows\":" + std::to_string(kernels_.int_unit_min_rows);
    } else {
      s += ",\"int_dot\":\"off\"";
    }
  }
  if (quant_.on()) {
    char qs[32];
    std::snprintf(qs, sizeof qs, "%.6f", quant_seconds_);
    s += std::string(",\"quantize_seconds\":") + qs;
    if (tile_memory_.bytes()) s += tile_bytes();
  } else if (tile_memory_.bytes()) {
    s += ",\"weights\":\"bf16 experts copied once into the matrix unit's tile order; the vector tiles read the originals in place\"";
    s += tile_bytes();
  } else if (quantized_) {
    s += ",\"weights\":\"quantized, read in place from the host's memory and dequantized per K pass into per-thread panels\"";
  } else {
    s += ",\"weights\":\"read in place from the host's memory, not copied\"";
  }
  if (!tile_skipped_.empty()) s += ",\"tile_weights_skipped\":\"" + tile_skipped_ + "\"";
  auto type_name = [](int t) {
    if (ggml_block(t)) return ggml_elem_name(t);
    return t == elem_fp8 ? "f8_e4m3" : t == elem_int4 ? "int4" : t == elem_mxfp4 ? "mxfp4" : t == elem_int8 ? "int8" : t == elem_bf16 ? "bf16" : "f32";
  };
  s += std::string(",\"w13_dtype\":\"") + type_name(experts_[0].w13_type) + "\",\"w2_dtype\":\"" + type_name(experts_[0].w2_type) + "\"";
  if (has_shared_)
    s += std::string(",\"shared_w13_dtype\":\"") + type_name(experts_.back().w13_type) + "\",\"shared_w2_dtype\":\"" +
         type_name(experts_.back().w2_type) + "\"";
  if (scale_b0_) s += ",\"scale_block\":[" + std::to_string(scale_b0_) + "," + std::to_string(scale_b1_) + "]";
  s += ",\"panel_min_rows\":" + std::to_string(kernels_.panel_min_rows);
  s += ",\"weight_bytes\":" + std::to_string(weight_bytes_);
  if (scale_bytes_) s += ",\"scale_bytes\":" + std::to_string(scale_bytes_);
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.6f", load_seconds_);
  s += std::string(",\"load_seconds\":") + secs;
  s += ",\"scratch_bytes\":" + std::to_string(scratch_bytes());
  s += ",\"scratch_tokens\":" + std::to_string(cap_tokens_);
  s += ",\"scratch_grows\":" + std::to_string(grow_count_) + "}";
  return s;
}

}  // namespace moereg::cpu
