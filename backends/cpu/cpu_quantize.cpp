// SPDX-License-Identifier: Apache-2.0
// The online quantization of the routed experts at create (backend option quantize): each
// row's groups of inputs get s = max|w| / 127 (int8) or / 7 (int4) and codes
// q = round(w / s) (ties to even), so |w - q s| <= s / 2 for every weight. The codes are
// written by the pool's threads into anonymous memory (first touch by the thread that later
// reads them, on hosts where that matters), then the experts read them as the 4-bit and
// int8 panel paths do. The originals are not read again. quantize=q8_0|q4_0|q4_k|q6_k writes
// ggml blocks instead (cpu_ggml_quantize.cpp), read as GGUF experts are.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu_ggml_blocks.h"
#include "cpu_moe.h"
#include "cpu_moe_detail.h"

namespace moereg::cpu {
namespace {

constexpr std::int64_t rows_per_job = 16;

}  // namespace

void moe_engine::run_quant_job(void* self, std::int64_t i, int) {
  auto* me = static_cast<moe_engine*>(self);
  const quant_job& j = me->quant_jobs_[static_cast<std::size_t>(i)];
  const bool int4 = me->quant_.bits == 4;
  const float qmax = int4 ? 7.0f : 127.0f;
  const std::int64_t g = me->quant_.group, groups = ceil_div(j.k, g);
  std::vector<float> w(static_cast<std::size_t>(j.k));
  for (std::int64_t r = 0; r < j.rows; ++r) {
    const char* src = j.src + r * j.src_row;
    for (std::int64_t c = 0; c < j.k; ++c)
      w[static_cast<std::size_t>(c)] = j.src_type == elem_bf16 ? bf16_value(reinterpret_cast<const std::uint16_t*>(src)[c])
                                                                : reinterpret_cast<const float*>(src)[c];
    char* dst = j.dst + r * j.dst_row;
    if (me->quant_.ggml >= 0) {
      ggml_quantize_row(me->quant_.ggml, w.data(), j.k, reinterpret_cast<std::uint8_t*>(dst));
      continue;
    }
    if (int4) std::memset(dst, 0, static_cast<std::size_t>(ceil_div(j.k, 2)));
    for (std::int64_t gi = 0; gi < groups; ++gi) {
      const std::int64_t c0 = gi * g, c1 = std::min(j.k, c0 + g);
      float amax = 0;
      for (std::int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(w[static_cast<std::size_t>(c)]));
      const float s = amax / qmax, inv = amax > 0 ? qmax / amax : 0.0f;
      j.scales[r * groups + gi] = s;
      for (std::int64_t c = c0; c < c1; ++c) {
        const float q = std::clamp(std::nearbyint(w[static_cast<std::size_t>(c)] * inv), -qmax, qmax);
        if (int4) {
          const auto code = static_cast<std::uint8_t>(static_cast<int>(q) + 8);
          dst[c / 2] = static_cast<char>(static_cast<std::uint8_t>(dst[c / 2]) | (c % 2 ? code << 4 : code));
        } else {
          dst[c] = static_cast<char>(static_cast<std::int8_t>(q));
        }
      }
    }
  }
}

void moe_engine::quantize_experts(const online_quant& q) {
  const std::int64_t E = num_experts_, H = hidden_, I = experts_[0].inter;
  quant_ = q;
  const bool ggml = q.ggml >= 0;
  if (quant_.group <= 0 || ggml) quant_.group = std::max(H, I);  // one scale per row (ggml: none here)
  const std::int64_t g = quant_.group;
  const int type = ggml ? q.ggml : q.bits == 4 ? elem_int4 : elem_int8;
  auto row_bytes = [&](std::int64_t k) { return ggml ? weight_offset(type, k) : q.bits == 4 ? ceil_div(k, 2) : k; };
  // Per expert: w13 codes, w2 codes, then all scales; each region 64-byte aligned.
  const std::int64_t c13 = round_up(2 * I * row_bytes(H), 64), c2 = round_up(H * row_bytes(I), 64);
  const std::int64_t s13 = ggml ? 0 : 2 * I * ceil_div(H, g), s2 = ggml ? 0 : H * ceil_div(I, g);
  const std::int64_t per_expert = c13 + c2 + round_up((s13 + s2) * 4, 64);
  std::string source;
  const std::int64_t budget = copy_budget(kernels_.copy_memory_limit, &source);
  if (budget >= 0 && E * per_expert > budget)
    throw unsupported("backend option quantize: the quantized copy of the experts needs " + std::to_string(E * per_expert) +
                      " bytes and " + source + " allows " + std::to_string(budget) +
                      " (a copy past the memory left would get the process killed while it is written)");
  quant_memory_ = tile_memory(static_cast<std::size_t>(E * per_expert));
  char* base = reinterpret_cast<char*>(quant_memory_.data());
  quant_jobs_.clear();
  for (std::int64_t e = 0; e < E; ++e) {
    expert& ex = experts_[static_cast<std::size_t>(e)];
    char* d13 = base + e * per_expert;
    char* d2 = d13 + c13;
    auto* f13 = reinterpret_cast<float*>(d2 + c2);
    float* f2 = f13 + s13;
    for (std::int64_t r = 0; r < 2 * I; r += rows_per_job)
      quant_jobs_.push_back({e, ex.w13 + r * ex.w13_row, ex.w13_row, ex.w13_type, std::min(rows_per_job, 2 * I - r), H,
                             d13 + r * row_bytes(H), row_bytes(H), f13 + r * ceil_div(H, g)});
    for (std::int64_t r = 0; r < H; r += rows_per_job)
      quant_jobs_.push_back({e, ex.w2 + r * ex.w2_row, ex.w2_row, ex.w2_type, std::min(rows_per_job, H - r), I,
                             d2 + r * row_bytes(I), row_bytes(I), f2 + r * ceil_div(I, g)});
    ex.w13 = d13;
    ex.w13_row = row_bytes(H);
    ex.w2 = d2;
    ex.w2_row = row_bytes(I);
    ex.w13_scale = ggml ? nullptr : f13;
    ex.w13_scale_row = ceil_div(H, g);
    ex.w2_scale = ggml ? nullptr : f2;
    ex.w2_scale_row = ceil_div(I, g);
  }
  // The jobs carry the original rows and types; the experts read the codes from here on.
  run_by_node(static_cast<std::int64_t>(quant_jobs_.size()), &run_quant_job,
              [this](std::int64_t i) { return quant_jobs_[static_cast<std::size_t>(i)].expert; });
  quant_jobs_ = {};
  for (std::int64_t e = 0; e < E; ++e) {
    experts_[static_cast<std::size_t>(e)].w13_type = type;
    experts_[static_cast<std::size_t>(e)].w2_type = type;
  }
  if (ggml) {
    weight_bytes_ = static_cast<std::uint64_t>(E * (2 * I * row_bytes(H) + H * row_bytes(I)));
    scale_bytes_ = 0;  // inside the blocks
    return;
  }
  scale_b0_ = 1;
  scale_b1_ = g;
  weight_bytes_ = static_cast<std::uint64_t>(E * (2 * I * row_bytes(H) + H * row_bytes(I)));
  scale_bytes_ = static_cast<std::uint64_t>(E * (s13 + s2) * 4);
}

}  // namespace moereg::cpu
