// SPDX-License-Identifier: Apache-2.0
// Merging adapters as edits of a conversion plan (lora_merge.h).
#include "moereg/lora/lora_merge.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "moereg/base/error.h"

namespace moereg {

namespace {

float load_f32(const std::byte* p, dtype t) {
  switch (t) {
    case dtype::F32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case dtype::BF16: {
      std::uint16_t h;
      std::memcpy(&h, p, 2);
      std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case dtype::F16: {
      std::uint16_t h;
      std::memcpy(&h, p, 2);
      std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16, ex = (h >> 10) & 0x1f, man = h & 0x3ffu, u;
      if (ex == 0x1f) u = sign | 0x7f800000u | (man << 13);
      else if (ex) u = sign | ((ex + 112) << 23) | (man << 13);
      else if (!man) u = sign;
      else {
        int e = -1;
        do {
          ++e;
          man <<= 1;
        } while (!(man & 0x400u));
        u = sign | (static_cast<std::uint32_t>(112 - e) << 23) | ((man & 0x3ffu) << 13);
      }
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    default: throw error("LoRA factors of dtype " + std::string(dtype_name(t)) + " are not supported");
  }
}

// float -> bf16, nearest even (NaN stays a quiet NaN): what torch's .to(bfloat16) does.
inline std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}
inline float from_bf16(std::uint16_t h) {
  std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// A pair's factors as contiguous float32: A [r, in], B [out, r].
void unpack(const matrix_view& v, std::vector<float>& out) {
  out.resize(static_cast<std::size_t>(v.rows * v.cols));
  for (std::int64_t r = 0; r < v.rows; ++r)
    for (std::int64_t c = 0; c < v.cols; ++c) out[static_cast<std::size_t>(r * v.cols + c)] = load_f32(v.at(r, c), v.type);
}

}  // namespace

namespace {

// One output row: acc = (B @ A)[o, :], the rank terms summed in order as a float32 matrix
// product sums them, then scaled and added to the weight row. Cloned for AVX2 with the same
// operations in the same order (no contraction into FMAs), so every CPU gives the same bits.
__attribute__((target_clones("avx2", "default"))) bool delta_row(const float* b_row, const float* A, std::int64_t r,
                                                                 std::int64_t in, float s, float* acc, std::byte* w, bool bf16,
                                                                 bool round_twice) {
  // Blocks of 32 columns stay in registers across the rank loop (acc is touched once).
  constexpr std::int64_t blk = 32;
  std::int64_t i0 = 0;
  for (; i0 + blk <= in; i0 += blk) {
    float t[blk];
    for (std::int64_t k = 0; k < blk; ++k) t[k] = b_row[0] * A[i0 + k];
    for (std::int64_t j = 1; j < r; ++j) {
      const float bj = b_row[j];
      const float* Aj = A + j * in + i0;
      for (std::int64_t k = 0; k < blk; ++k) t[k] += bj * Aj[k];
    }
    for (std::int64_t k = 0; k < blk; ++k) acc[i0 + k] = t[k];
  }
  for (std::int64_t i = i0; i < in; ++i) {
    float t = b_row[0] * A[i];
    for (std::int64_t j = 1; j < r; ++j) t += b_row[j] * A[j * in + i];
    acc[i] = t;
  }
  // Whether the sum overflowed where the weight was finite (a huge lora_alpha, factors near
  // the type's limit): bit tests on the results, so the loops still vectorize.
  bool overflowed = false;
  if (bf16) {
    auto* wb = reinterpret_cast<std::uint16_t*>(w);
    for (std::int64_t i = 0; i < in; ++i) {
      const std::uint16_t before = wb[i];
      wb[i] = round_twice ? to_bf16(from_bf16(before) + from_bf16(to_bf16(acc[i] * s))) : to_bf16(from_bf16(before) + acc[i] * s);
      overflowed |= (wb[i] & 0x7f80) == 0x7f80 && (before & 0x7f80) != 0x7f80;
    }
  } else {
    auto* wf = reinterpret_cast<float*>(w);
    for (std::int64_t i = 0; i < in; ++i) {
      const float before = wf[i];
      wf[i] += acc[i] * s;
      overflowed |= !std::isfinite(wf[i]) && std::isfinite(before);
    }
  }
  return overflowed;
}

// The adapter tensors one layer's pairs read, released when its last slot is merged.
struct layer_release {
  std::atomic<std::size_t> remaining{0};
  std::vector<const checkpoint::entry*> sources;
};

}  // namespace

std::int64_t add_lora_delta(const lora_pair& pair, std::byte* matrix, dtype type, std::int64_t row_stride, bool round_twice) {
  thread_local std::vector<float> A, B, acc;
  unpack(pair.A, A);
  unpack(pair.B, B);
  const std::int64_t r = pair.A.rows, in = pair.A.cols, out = pair.B.rows;
  const float s = static_cast<float>(pair.scale());
  acc.resize(static_cast<std::size_t>(in));
  const bool bf16 = type == dtype::BF16;
  const std::size_t es = bf16 ? 2 : 4;
  std::int64_t first_bad = -1;
  for (std::int64_t o = 0; o < out; ++o)
    if (delta_row(B.data() + o * r, A.data(), r, in, s, acc.data(), matrix + static_cast<std::size_t>(o * row_stride) * es, bf16,
                  round_twice) &&
        first_bad < 0)
      first_bad = o;
  return first_bad;
}

namespace {

// The merged weight would hold an infinity where the base held a finite value: refused, so that
// no complete-looking checkpoint of overflowed weights is written.
[[noreturn]] void refuse_overflow(const lora_pair& pair, const std::string& weights_path, const std::string& what, std::int64_t row) {
  std::ostringstream why;
  why << weights_path << ": merging its pair on " << what << " overflows row " << row << " of the weight (scale "
      << pair.scale() << " = lora_alpha " << pair.alpha << (pair.rslora ? " / sqrt(" : " / ") << pair.rank
      << (pair.rslora ? ")" : "") << "): a finite weight would become infinite or NaN";
  throw error(why.str());
}

}  // namespace

void attach_lora_merge(conversion_plan& plan, const lora_adapter& adapter, lora_rounding rounding) {
  const decoded_checkpoint& src = *plan.source;
  if (src.quant.quantized())
    throw error(src.ckpt->path() + ": the base is quantized (" + src.quant.describe() +
                "); merge into a bf16 checkpoint (moereg convert --dtype bf16 makes one)");
  auto supported = [](dtype t) { return t == dtype::BF16 || t == dtype::F32; };
  const bool twice = rounding == lora_rounding::peft;
  std::size_t attached = 0, wanted = adapter.expert_pair_count() + adapter.others.size();
  std::vector<bool> used_others(adapter.others.size(), false);
  std::unordered_map<const checkpoint::entry*, std::string> canonical_of;
  for (const auto& p : src.others) canonical_of[p.source] = p.canonical;
  std::unordered_map<std::string, std::size_t> other_at;
  for (std::size_t i = 0; i < adapter.others.size(); ++i) other_at[adapter.others[i].canonical] = i;
  std::int64_t first_kept = -1, last_kept = -1;
  std::map<int, std::shared_ptr<layer_release>> releases;

  for (auto& o : plan.outputs) {
    if (const assembled_output* a = o.assembled(); a && a->is_expert()) {
      auto it = adapter.experts.find(a->layer);
      if (it == adapter.experts.end()) continue;
      if (!supported(o.spec.type))
        throw error(o.spec.name + ": experts of dtype " + std::string(dtype_name(o.spec.type)) + "; merging supports BF16 and F32 weights");
      bool any = false;
      for (std::size_t s = 0; s < a->slots.size(); ++s)
        for (piece p : a->entry->pieces) {
          auto e = static_cast<std::size_t>(a->first_expert) + s;
          if (it->second[e][static_cast<std::size_t>(p)]) {
            any = true;
            ++attached;
          }
        }
      if (first_kept < 0 || a->first_expert < first_kept) first_kept = a->first_expert;
      last_kept = std::max<std::int64_t>(last_kept, a->first_expert + static_cast<std::int64_t>(a->slots.size()));
      if (!any) continue;
      const auto* experts = &it->second;
      const expert_entry* entry = a->entry;
      const std::int64_t first = a->first_expert, cols = a->cols;
      const dtype type = o.spec.type;
      const std::int64_t I = adapter.dims.I, H = adapter.dims.H;
      std::shared_ptr<layer_release> rel = releases[a->layer];
      if (!rel) {
        rel = releases[a->layer] = std::make_shared<layer_release>();
        for (const auto& ex : it->second)
          for (const auto& pr : ex)
            if (pr)
              for (const matrix_view* v : {&pr->A, &pr->B})
                if (std::find(rel->sources.begin(), rel->sources.end(), v->source) == rel->sources.end()) rel->sources.push_back(v->source);
      }
      rel->remaining += a->slots.size();
      const std::string name = o.spec.name, W = adapter.weights_path;
      o.edit = [experts, entry, first, cols, type, twice, I, H, rel, name, W](std::size_t slot, std::byte* data) {
        std::int64_t row0 = 0;
        const auto& ex = (*experts)[static_cast<std::size_t>(first) + slot];
        for (piece p : entry->pieces) {
          const auto& pr = ex[static_cast<std::size_t>(p)];
          if (pr) {
            const std::int64_t bad = add_lora_delta(*pr, data + static_cast<std::size_t>(row0 * cols) * dtype_size(type), type, cols, twice);
            if (bad >= 0)
              refuse_overflow(*pr, W, name + " expert " + std::to_string(first + static_cast<std::int64_t>(slot)) + " " + piece_name(p), bad);
          }
          row0 += p == piece::down ? H : I;
        }
        // The layer's last slot: its factors' pages are not needed again (the fused forms
        // spread one expert over a whole tensor, so they are released per layer, not per slot).
        if (--rel->remaining == 0)
          for (const checkpoint::entry* e : rel->sources)
            e->file->file().dont_need(e->file->data_offset() + e->info->begin, e->info->nbytes());
      };
      o.origin += " + LoRA";
    } else if (const stored_output* st = o.stored()) {
      auto c = canonical_of.find(st->source);
      if (c == canonical_of.end()) continue;
      auto k = other_at.find(c->second);
      if (k == other_at.end()) continue;
      const lora_pair& pr = adapter.others[k->second].pair;
      const auto& shape = st->source->info->shape;
      if (shape.size() != 2 || shape[0] != pr.B.rows || shape[1] != pr.A.cols)
        throw error(adapter.weights_path + ": the pair on " + c->second + " (" + shape_string({pr.B.rows, pr.A.cols}) + ") does not fit the base's " +
                    shape_string(shape));
      if (!supported(st->source->info->type))
        throw error(c->second + ": dtype " + std::string(dtype_name(st->source->info->type)) + "; merging supports BF16 and F32 weights");
      const dtype type = st->source->info->type;
      const lora_pair* p = &pr;
      const std::int64_t cols = shape[1];
      const std::string name = c->second, W = adapter.weights_path;
      o.edit = [p, type, cols, name, W](std::size_t, std::byte* data) {
        const std::int64_t bad = add_lora_delta(*p, data, type, cols, false);
        if (bad >= 0) refuse_overflow(*p, W, name, bad);
      };
      o.origin += " + LoRA";
      used_others[k->second] = true;
      ++attached;
    }
  }
  std::vector<std::string> missing;
  for (std::size_t i = 0; i < adapter.others.size(); ++i)
    if (!used_others[i]) missing.push_back(adapter.others[i].canonical);
  if (!missing.empty()) {
    std::string msg = adapter.weights_path + ": " + std::to_string(missing.size()) + " adapted module(s) have no weight in the base " + src.ckpt->path() + ":";
    for (std::size_t i = 0; i < missing.size() && i < 10; ++i) msg += "\n  " + missing[i];
    throw error(msg);
  }
  // Pairs on experts outside --experts are not written, by request; any other is a bug.
  std::size_t outside = 0;
  for (const auto& [layer, ex] : adapter.experts)
    for (std::size_t e = 0; e < ex.size(); ++e)
      if (static_cast<std::int64_t>(e) < first_kept || static_cast<std::int64_t>(e) >= last_kept)
        for (const auto& p : ex[e]) outside += p.has_value();
  if (attached + outside != wanted)
    throw error(adapter.weights_path + ": " + std::to_string(wanted - attached - outside) + " expert pair(s) found no matrix in the plan");
}

}  // namespace moereg
