// SPDX-License-Identifier: Apache-2.0
#include "cpu_moe.h"

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <tuple>

#include "cpu_ggml_blocks.h"
#include "cpu_moe_detail.h"

namespace moereg::cpu {
namespace {

// Cache blocking. A K pass of 1024 bf16 keeps a 4 x 6 tile's operands (20 KB) in the 32 KB
// L1; a row block's activations for one pass (<= 512 KB) stay in L2 while the weight panel
// streams past once. Items are capped so the gate/up partial sums fit a per-thread buffer.
constexpr std::int64_t default_k_block = 1024;
constexpr std::int64_t l2_budget = 512 * 1024;
constexpr std::int64_t unit_row_quantum = 32;  // a unit item's rows: whole pairs of 16-token tiles, as the units take them
// The panel path reads its widened f32 activations once per weight panel: a quarter of a
// 1 MiB L2 (half of a 512 KiB one) leaves room for the panels and the streaming weights
// (measured on Zen 2: a 3 x 4 f32 tile over 64 rows x 1024 runs at 82 GFLOP/s per core,
// over 64 x 2048 (512 KiB) at 42).
constexpr std::int64_t l2_panel_budget = 256 * 1024;

const char* dtype_label(std::int32_t t) {
  static const char* names[] = {"BOOL", "U8",   "I8",      "I16",     "I32",     "I64", "F16", "BF16",
                                "F32",  "F64",  "F8_E4M3", "F8_E5M2", "F8_E8M0", "U16", "U32", "U64"};
  return t >= 0 && t < 16 ? names[t] : "unknown";
}

std::string shape_text(const moereg_tensor_view& v) {
  std::string s = "[";
  for (int i = 0; i < v.rank; ++i) s += (i ? ", " : "") + std::to_string(v.shape[i]);
  return s + "]";
}

std::string dims_text(std::initializer_list<std::int64_t> dims) {
  std::string s = "[";
  bool first = true;
  for (auto d : dims) {
    s += (first ? "" : ", ") + std::to_string(d);
    first = false;
  }
  return s + "]";
}

// Weight element type, or unsupported with what this backend reads. FP8 only where the
// ABI carries its scales (the routed experts' w13 and w2).
int weight_elem(const moereg_tensor_view& v, const char* name, bool fp8_allowed = false) {
  if (v.dtype == MOEREG_DTYPE_BF16) return elem_bf16;
  if (v.dtype == MOEREG_DTYPE_F32) return elem_f32;
  if (v.dtype == MOEREG_DTYPE_F8_E4M3 && fp8_allowed) return elem_fp8;
  throw unsupported(std::string(name) + ": dtype " + dtype_label(v.dtype) + " is not supported by the cpu backend (expected " +
                    (fp8_allowed ? "BF16, F32 or F8_E4M3 with block scales" : "BF16 or F32") + ")");
}

void expect_shape(const moereg_tensor_view& v, const char* name, std::initializer_list<std::int64_t> dims) {
  if (v.memory != MOEREG_MEMORY_HOST)
    throw unsupported(std::string(name) + ": in device memory; the cpu backend reads host memory");
  bool ok = v.rank == static_cast<std::int32_t>(dims.size());
  int i = 0;
  for (auto d : dims) ok = ok && i < v.rank && v.shape[i++] == d;
  if (!ok) throw std::invalid_argument(std::string(name) + ": expected shape " + dims_text(dims) + ", found " + shape_text(v));
  if (v.strides[v.rank - 1] != 1)
    throw std::invalid_argument(std::string(name) + ": expected the last dimension contiguous (stride 1), found stride " +
                                std::to_string(v.strides[v.rank - 1]));
}

float load_elem(const char* p, int type, std::int64_t i) {
  return type == elem_bf16 ? bf16_value(reinterpret_cast<const std::uint16_t*>(p)[i]) : reinterpret_cast<const float*>(p)[i];
}

}  // namespace

// GGUF experts: ggml blocks as U8 rows of whole blocks, each matrix its own ggml type.
void moe_engine::ggml_experts(const moereg_moe_weights& w, int& t13, int& t2) {
  const std::int64_t E = w.num_experts, H = w.hidden, I = w.intermediate;
  const std::int32_t id13 = w.quant_types & 0xFFFF, id2 = (w.quant_types >> 16) & 0xFFFF;
  t13 = ggml_elem(id13);
  t2 = ggml_elem(id2);
  for (const auto& [t, id, name] : {std::tuple{t13, id13, "w13"}, std::tuple{t2, id2, "w2"}})
    if (t < 0)
      throw unsupported(std::string(name) + ": ggml type " + std::to_string(id) +
                        " is not one the cpu backend reads (expected 8 Q8_0, 2 Q4_0, 12 Q4_K, 14 Q6_K or 1 F16)");
  for (const auto& [t, len, name, what] : {std::tuple{t13, H, "w13", "H"}, std::tuple{t2, I, "w2", "I"}})
    if (len % block_values(t))
      throw std::invalid_argument(std::string(name) + ": " + ggml_elem_name(t) + " rows of " + what + " = " + std::to_string(len) +
                                  " values, expected whole blocks of " + std::to_string(block_values(t)));
  for (const auto* v : {&w.w13, &w.w2})
    if (v->dtype != MOEREG_DTYPE_U8)
      throw std::invalid_argument(std::string(v == &w.w13 ? "w13" : "w2") + ": expected U8 (ggml blocks) with weight_quant 3, found " +
                                  dtype_label(v->dtype));
  expect_shape(w.w13, "w13", {E, 2 * I, weight_offset(t13, H)});
  expect_shape(w.w2, "w2", {E, H, weight_offset(t2, I)});
}

moe_engine::moe_engine(const moereg_moe_weights& w, int threads, const kernel_table& kernels, std::int64_t reserve_tokens,
                       std::int64_t k_block, bool phases, const online_quant& quant, const numa_topology& numa,
                       int pool_spin_us)
    : kernels_(kernels), k_block_(k_block > 0 ? k_block : default_k_block), phases_(phases), pool_spin_us_(pool_spin_us) {
  num_experts_ = w.num_experts;
  hidden_ = w.hidden;
  const std::int64_t E = w.num_experts, H = w.hidden, I = w.intermediate;
  if (E <= 0 || H <= 0 || I <= 0)
    throw std::invalid_argument("weights: expected positive num_experts, hidden, intermediate; found " + std::to_string(E) +
                                ", " + std::to_string(H) + ", " + std::to_string(I));
  if (!w.w13.data || !w.w2.data) throw std::invalid_argument("weights: w13 and w2 are required");
  auto [t13, t2] = check_routed(w);
  bind_routed(w, t13, t2);
  bind_shared(w);
  if (numa.nodes() > 1) {
    numa_ = plan_numa(numa, std::max(1, threads), E);
    node_begin_.assign(static_cast<std::size_t>(numa_.nodes()) + 1, 0);
    pool_ = std::make_unique<thread_pool>(std::max(1, threads), numa_.thread_cpu, numa_.thread_node, pool_spin_us);
  } else {
    numa_.expert_begin = {0, E};
    pool_ = std::make_unique<thread_pool>(std::max(1, threads), std::vector<int>{}, std::vector<int>{}, pool_spin_us);
  }
  quantize_at_create(quant, t13, t2);
  setup_int_dot(quant);
  // Any expert read through panels (an F8_E4M3 shared expert beside bf16 routed ones too).
  quantized_ = std::any_of(experts_.begin(), experts_.end(),
                           [](const expert& x) { return panel_weights(x.w13_type) || panel_weights(x.w2_type); });
  if (quantized_ || kernels_.panel_min_rows > 0 || kernels_.widen_activations) {
    panel_k_ = std::min(k_block_, std::max(hidden_, h_stride_));
    const auto nt = static_cast<std::size_t>(pool_->size());
    panel_b_.assign(nt * static_cast<std::size_t>(max_tile_n * panel_k_), 0.0f);
    panel_a_.assign(nt * static_cast<std::size_t>(max_item_rows * panel_k_), 0.0f);
  }
  if (kernels_.unit.name) {
    kh32_ = ceil_div(hidden_, 32) * 32;
    ki32_ = ceil_div(h_stride_, 32) * 32;
    if (kernels_.unit.tile_weights) {
      const auto t0 = std::chrono::steady_clock::now();
      make_tile_weights();
      load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  }
  reserve(std::max<std::int64_t>(1, reserve_tokens), 8);
}

// The routed experts' element types {w13, w2}, every shape and scale checked against them.
std::pair<int, int> moe_engine::check_routed(const moereg_moe_weights& w) {
  const std::int64_t E = w.num_experts, H = w.hidden, I = w.intermediate;
  int t13 = elem_bf16, t2 = elem_bf16;
  if (w.weight_quant == MOEREG_WEIGHT_QUANT_GGML) {
    ggml_experts(w, t13, t2);
  } else if (w.weight_quant != MOEREG_WEIGHT_QUANT_NONE) {
    // 4-bit codes: U8 rows of ceil(K/2) bytes, one scale per row and group of inputs.
    if (w.weight_quant != MOEREG_WEIGHT_QUANT_INT4 && w.weight_quant != MOEREG_WEIGHT_QUANT_MXFP4)
      throw unsupported("weight_quant: " + std::to_string(w.weight_quant) +
                        " is not a coding the cpu backend reads (expected 1 int4, 2 mxfp4 or 3 ggml blocks)");
    t13 = t2 = w.weight_quant == MOEREG_WEIGHT_QUANT_INT4 ? elem_int4 : elem_mxfp4;
    for (const auto* v : {&w.w13, &w.w2})
      if (v->dtype != MOEREG_DTYPE_U8)
        throw std::invalid_argument(std::string(v == &w.w13 ? "w13" : "w2") + ": expected U8 (two 4-bit codes a byte) with weight_quant " +
                                    std::to_string(w.weight_quant) + ", found " + dtype_label(v->dtype));
    expect_shape(w.w13, "w13", {E, 2 * I, ceil_div(H, 2)});
    expect_shape(w.w2, "w2", {E, H, ceil_div(I, 2)});
  } else {
    t13 = weight_elem(w.w13, "w13", true);
    t2 = weight_elem(w.w2, "w2", true);
    expect_shape(w.w13, "w13", {E, 2 * I, H});
    expect_shape(w.w2, "w2", {E, H, I});
  }
  const char* const q13 = t13 == elem_fp8 ? "F8_E4M3 w13" : "4-bit w13";
  const char* const q2 = t2 == elem_fp8 ? "F8_E4M3 w2" : "4-bit w2";
  if (scaled(t13) && !w.w13_scale.data) throw std::invalid_argument(std::string("w13_scale: required with ") + q13);
  if (scaled(t2) && !w.w2_scale.data) throw std::invalid_argument(std::string("w2_scale: required with ") + q2);
  if (scaled(t13) || scaled(t2)) {
    scale_b0_ = w.scale_block[0];
    scale_b1_ = w.scale_block[1];
    if (scale_b0_ <= 0 || scale_b1_ <= 0)
      throw std::invalid_argument("scale_block: expected positive {rows, columns} per scale with F8_E4M3 weights, found {" +
                                  std::to_string(scale_b0_) + ", " + std::to_string(scale_b1_) + "}");
    if (four_bit(t13) && scale_b0_ != 1)
      throw std::invalid_argument("scale_block: expected {1, group} with 4-bit weights (a scale per row), found {" +
                                  std::to_string(scale_b0_) + ", " + std::to_string(scale_b1_) + "}");
  }
  // A scale view belongs to an FP8 or 4-bit matrix and to nothing else.
  auto check_scale = [&](const moereg_tensor_view& sv, int wt, const char* name, const char* wname,
                         std::initializer_list<std::int64_t> dims) {
    if (!scaled(wt)) {
      if (sv.data)
        throw std::invalid_argument(std::string(name) + ": given, but " + wname + " is " +
                                    dtype_label(wt == elem_bf16 ? MOEREG_DTYPE_BF16 : MOEREG_DTYPE_F32) +
                                    " (scales go with F8_E4M3 and 4-bit weights only)");
      return;
    }
    if (sv.dtype != MOEREG_DTYPE_F32)
      throw unsupported(std::string(name) + ": dtype " + dtype_label(sv.dtype) + " is not supported (expected F32)");
    expect_shape(sv, name, dims);
  };
  // Gate and up rows keep their own block grids: ceil(I/b0) scale rows each (the same as
  // ceil(2I/b0) whenever b0 divides I, the case of every real checkpoint).
  const std::int64_t gate_scale_rows = scaled(t13) ? ceil_div(I, scale_b0_) : 0;
  check_scale(w.w13_scale, t13, "w13_scale", "w13", {E, 2 * gate_scale_rows, scaled(t13) ? ceil_div(H, scale_b1_) : 0});
  check_scale(w.w2_scale, t2, "w2_scale", "w2",
              {E, scaled(t2) ? ceil_div(H, scale_b0_) : 0, scaled(t2) ? ceil_div(I, scale_b1_) : 0});
  return {t13, t2};
}

// One view per routed expert into the weights where they lie, and the bytes they hold.
void moe_engine::bind_routed(const moereg_moe_weights& w, int t13, int t2) {
  const std::int64_t E = w.num_experts, H = w.hidden, I = w.intermediate;
  const std::int64_t gate_scale_rows = scaled(t13) ? ceil_div(I, scale_b0_) : 0;
  for (std::int64_t e = 0; e < E; ++e) {
    expert x;
    x.w13 = static_cast<const char*>(w.w13.data) + e * w.w13.strides[0] * static_cast<std::int64_t>(elem_bytes(t13));
    x.w13_row = w.w13.strides[1] * static_cast<std::int64_t>(elem_bytes(t13));
    x.w2 = static_cast<const char*>(w.w2.data) + e * w.w2.strides[0] * static_cast<std::int64_t>(elem_bytes(t2));
    x.w2_row = w.w2.strides[1] * static_cast<std::int64_t>(elem_bytes(t2));
    x.w13_type = t13;
    x.w2_type = t2;
    x.inter = I;
    if (scaled(t13)) {
      x.w13_scale = static_cast<const float*>(w.w13_scale.data) + e * w.w13_scale.strides[0];
      x.w13_scale_row = w.w13_scale.strides[1];
    }
    if (scaled(t2)) {
      x.w2_scale = static_cast<const float*>(w.w2_scale.data) + e * w.w2_scale.strides[0];
      x.w2_scale_row = w.w2_scale.strides[1];
    }
    experts_.push_back(x);
  }
  weight_bytes_ = static_cast<std::uint64_t>(E * 2 * I * weight_offset(t13, round_up(H, 2))) +
                  static_cast<std::uint64_t>(E * H * weight_offset(t2, round_up(I, 2)));
  if (scaled(t13)) scale_bytes_ += static_cast<std::uint64_t>(E * 2 * gate_scale_rows * ceil_div(H, scale_b1_)) * 4;
  if (scaled(t2)) scale_bytes_ += static_cast<std::uint64_t>(E * ceil_div(H, scale_b0_) * ceil_div(I, scale_b1_)) * 4;
}

// The shared expert, when the layer has one, after the routed ones (and its gate).
void moe_engine::bind_shared(const moereg_moe_weights& w) {
  const std::int64_t H = w.hidden, I = w.intermediate;
  h_stride_ = I;
  if (w.shared_w13.data) {
    const std::int64_t Is = w.shared_intermediate;
    if (Is <= 0) throw std::invalid_argument("shared_intermediate: expected > 0 with a shared expert, found " + std::to_string(Is));
    if (!w.shared_w2.data) throw std::invalid_argument("shared_w2: required with shared_w13");
    expert s;
    s.w13_type = weight_elem(w.shared_w13, "shared_w13", true);
    s.w2_type = weight_elem(w.shared_w2, "shared_w2", true);
    expect_shape(w.shared_w13, "shared_w13", {2 * Is, H});
    expect_shape(w.shared_w2, "shared_w2", {H, Is});
    s.w13 = static_cast<const char*>(w.shared_w13.data);
    s.w13_row = w.shared_w13.strides[0] * static_cast<std::int64_t>(elem_bytes(s.w13_type));
    s.w2 = static_cast<const char*>(w.shared_w2.data);
    s.w2_row = w.shared_w2.strides[0] * static_cast<std::int64_t>(elem_bytes(s.w2_type));
    s.inter = Is;
    bind_shared_scales(w, s);
    experts_.push_back(s);
    has_shared_ = true;
    h_stride_ = std::max(h_stride_, Is);
    if (w.shared_gate.data) {
      shared_gate_type_ = weight_elem(w.shared_gate, "shared_gate");
      if (w.shared_gate.rank == 1) {
        expect_shape(w.shared_gate, "shared_gate", {H});
      } else {
        expect_shape(w.shared_gate, "shared_gate", {1, H});
      }
      shared_gate_ = static_cast<const char*>(w.shared_gate.data);
    }
  }
}

// An F8_E4M3 shared expert (API 3) reads its block scales on scale_block's grid, the routed
// experts' (DeepSeek-V3 ships both with 128 x 128 blocks); BF16 and F32 take none.
void moe_engine::bind_shared_scales(const moereg_moe_weights& w, expert& s) {
  const std::int64_t H = w.hidden, Is = s.inter;
  const bool f13 = s.w13_type == elem_fp8, f2 = s.w2_type == elem_fp8;
  for (const auto& [view, name, f8] : {std::tuple{&w.shared_w13_scale, "shared_w13_scale", f13},
                                       std::tuple{&w.shared_w2_scale, "shared_w2_scale", f2}}) {
    if (!f8 && view->data)
      throw std::invalid_argument(std::string(name) + ": given, but the shared expert's matrix is not F8_E4M3 (scales go "
                                  "with F8_E4M3 weights only)");
    if (f8 && !view->data) throw std::invalid_argument(std::string(name) + ": required with an F8_E4M3 shared expert");
    if (f8 && view->dtype != MOEREG_DTYPE_F32)
      throw unsupported(std::string(name) + ": dtype " + dtype_label(view->dtype) + " is not supported (expected F32)");
  }
  if (!f13 && !f2) return;
  const std::int64_t b0 = w.scale_block[0], b1 = w.scale_block[1];
  if (b0 <= 0 || b1 <= 0)
    throw std::invalid_argument("scale_block: expected positive {rows, columns} per scale with an F8_E4M3 shared expert, found {" +
                                std::to_string(b0) + ", " + std::to_string(b1) + "}");
  if (scale_b0_ == 0) {  // the routed experts take no scales: the grid is the shared expert's alone
    scale_b0_ = b0;
    scale_b1_ = b1;
  }
  if (f13) {
    expect_shape(w.shared_w13_scale, "shared_w13_scale", {2 * ceil_div(Is, b0), ceil_div(H, b1)});
    s.w13_scale = static_cast<const float*>(w.shared_w13_scale.data);
    s.w13_scale_row = w.shared_w13_scale.strides[0];
  }
  if (f2) {
    expect_shape(w.shared_w2_scale, "shared_w2_scale", {ceil_div(H, b0), ceil_div(Is, b1)});
    s.w2_scale = static_cast<const float*>(w.shared_w2_scale.data);
    s.w2_scale_row = w.shared_w2_scale.strides[0];
  }
}

// Backend option quantize=...: BF16/F32 experts quantized once, here. Returns the new types.
void moe_engine::quantize_at_create(const online_quant& quant, int& t13, int& t2) {
  const std::int64_t H = hidden_, I = experts_[0].inter;
  if (!quant.on()) return;
  std::string what = quant.ggml >= 0 ? std::string(ggml_elem_name(quant.ggml)) : "int" + std::to_string(quant.bits);
  for (char& c : what) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));  // as the option is written
  if (has_shared_ && (experts_.back().w13_scale || experts_.back().w2_scale))
    throw std::invalid_argument("backend option quantize=" + what +
                                ": the shared expert is F8_E4M3; it quantizes layers whose experts are all BF16 or F32");
  if (panel_weights(t13) || panel_weights(t2))
    throw std::invalid_argument("backend option quantize=" + what + ": the experts are already quantized (" +
                                (t13 == elem_fp8 ? "F8_E4M3" : ggml_block(t13) ? ggml_elem_name(t13) : "4-bit") +
                                "); it quantizes BF16 or F32 experts");
  if (quant.ggml >= 0)
    for (const auto& [len, name] : {std::pair{H, "H"}, std::pair{I, "I"}})
      if (len % block_values(quant.ggml))
        throw std::invalid_argument("backend option quantize=" + what + ": " + name + " = " + std::to_string(len) +
                                    ", expected whole blocks of " + std::to_string(block_values(quant.ggml)));
  const auto t0 = std::chrono::steady_clock::now();
  quantize_experts(quant);
  quant_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t13 = t2 = experts_[0].w13_type;
}

void moe_engine::reserve(std::int64_t tokens, std::int64_t top_k) {
  if (tokens <= cap_tokens_ && top_k <= cap_k_) return;
  if (cap_tokens_) ++grow_count_;
  cap_tokens_ = std::max(cap_tokens_, tokens);
  cap_k_ = std::max(cap_k_, top_k);
  const std::int64_t slots = cap_k_ + (has_shared_ ? 1 : 0);
  const std::size_t rows = static_cast<std::size_t>(cap_tokens_ * slots);
  bucket_begin_.assign(experts_.size() + 1, 0);
  bucket_fill_.assign(experts_.size() + 1, 0);
  row_token_.assign(rows, 0);
  row_slot_.assign(rows, 0);
  row_weight_.assign(rows, 0.0f);
  // With a matrix unit h lives in hv_; this one is made when a bucket first takes the vector
  // tiles (f32 input, FP8 experts, too few tokens), so it costs no memory otherwise.
  if (!kernels_.unit.name || !h_.empty()) size_vector_h();
  y_.assign(rows * static_cast<std::size_t>(hidden_), 0.0f);
  // plan_items makes at most 16 * threads + (row blocks <= buckets + rows) items.
  items_.reserve(static_cast<std::size_t>(16 * pool_->size() + 16) + experts_.size() + rows);
  gu_acc_.assign(static_cast<std::size_t>(pool_->size() * acc_floats), 0.0f);
  unit_row_.assign(experts_.size(), -1);
  if (!xv_.empty()) size_unit_buffers();  // the unit has run: its buffers follow T
  if (int_dot_) size_int_buffers();
}

void moe_engine::size_vector_h() {
  h_.assign(static_cast<std::size_t>(cap_tokens_ * (cap_k_ + (has_shared_ ? 1 : 0))) * static_cast<std::size_t>(h_stride_), 0.0f);
}

std::uint64_t moe_engine::scratch_bytes() const {
  return (h_.capacity() + y_.capacity() + row_weight_.capacity()) * 4 + (row_token_.capacity() + row_slot_.capacity()) * 4 +
         items_.capacity() * sizeof(item) + (gu_acc_.capacity() + panel_a_.capacity() + panel_b_.capacity()) * 4 +
         (xv_.capacity() + hv_.capacity() + unit_panel_.capacity()) * 2 + (unit_tile_bucket_.capacity() + unit_widen_.capacity()) * 4 +
         unit_row_.capacity() * 8;
}

void moe_engine::plan_items(bool down) {
  items_.clear();
  const int threads = pool_->size();
  // h has x's precision; on the panel path bf16 activations are widened to f32 per pass.
  const std::int64_t a_bytes = panel_k_ > 0 ? 4 : static_cast<std::int64_t>(elem_bytes(x_type_));
  const std::int64_t k_len = std::min(k_block_, down ? h_stride_ : hidden_);
  // Row blocks whose activations for one K pass stay in L2 while a weight panel streams past.
  const std::int64_t budget = panel_k_ > 0 ? l2_panel_budget : l2_budget;
  const std::int64_t tm = std::max(kernels_.panel_tile_m, kernels_.tile_m);
  std::int64_t row_block = std::clamp<std::int64_t>(budget / (k_len * a_bytes), 4, max_item_rows);
  row_block = std::max<std::int64_t>(tm, row_block / tm * tm);
  std::int64_t blocks = 0;
  for (std::size_t e = 0; e < experts_.size(); ++e) {
    std::int64_t rows = bucket_begin_[e + 1] - bucket_begin_[e];
    blocks += ceil_div(rows, on_unit(e) || int_on_unit(e) ? unit_item_rows : row_block);
  }
  if (blocks == 0) return;
  // Split the output columns so every thread gets several items, even at T = 1.
  const std::int64_t want = std::max<std::int64_t>(1, (16 * threads + blocks - 1) / blocks);
  for (std::size_t e = 0; e < experts_.size(); ++e) {
    std::int64_t begin = bucket_begin_[e], rows = bucket_begin_[e + 1] - begin;
    if (rows == 0) continue;
    std::int64_t cols = down ? hidden_ : experts_[e].inter;
    std::int64_t chunk, step;  // output columns and rows per item
    if (on_unit(e) || int_on_unit(e)) {
      const std::int64_t q = down ? 32 : 16, cap = down ? max_item_cols : max_item_pairs;
      chunk = std::clamp(ceil_div(ceil_div(cols, want), q) * q, q, cap);
      step = even_block(rows, unit_item_rows, unit_row_quantum);
    } else {
      // Whole tiles of weight rows per item (gate/up: pairs, each a gate and an up tile column).
      const std::int64_t quantum = std::lcm(std::lcm(kernels_.tile_n, kernels_.panel_tile_n), max_tile_n);
      chunk = std::min(round_up(std::max(quantum, ceil_div(cols, want)), quantum),
                       (down ? max_item_cols : max_item_pairs) / quantum * quantum);
      step = even_block(rows, row_block, tm);
    }
    for (std::int64_t r = 0; r < rows; r += step)
      for (std::int64_t c = 0; c < cols; c += chunk)
        items_.push_back({static_cast<std::int32_t>(e), static_cast<std::int32_t>(r),
                          static_cast<std::int32_t>(std::min(rows, r + step)), static_cast<std::int32_t>(c),
                          static_cast<std::int32_t>(std::min(cols, c + chunk))});
  }
}

void moe_engine::run_gate_up(void* self, std::int64_t i, int thread) {
  auto* me = static_cast<moe_engine*>(self);
  const item& it = me->items_[static_cast<std::size_t>(i)];
  const auto e = static_cast<std::size_t>(it.expert);
  if (me->int_bucket(e)) {
    if (me->int_on_unit(e)) me->int_unit_gate_up(it, thread);
    else me->int_gate_up(it, thread);
  } else if (me->on_unit(e)) {
    me->unit_gate_up(it, thread);
  } else {
    me->gate_up(it, thread);
  }
}

void moe_engine::run_down(void* self, std::int64_t i, int thread) {
  auto* me = static_cast<moe_engine*>(self);
  const item& it = me->items_[static_cast<std::size_t>(i)];
  const auto e = static_cast<std::size_t>(it.expert);
  if (me->int_bucket(e)) {
    if (me->int_on_unit(e)) me->int_unit_down(it, thread);
    else me->int_down(it, thread);
  } else if (me->on_unit(e)) {
    me->unit_down(it, thread);
  } else {
    me->down(it, thread);
  }
}

void moe_engine::run_sum(void* self, std::int64_t i, int) {
  auto* me = static_cast<moe_engine*>(self);
  const std::int64_t H = me->hidden_, chunk = me->sum_chunk_;
  const std::int64_t col_chunks = (H + chunk - 1) / chunk;
  const std::int64_t t = i / col_chunks, c0 = (i % col_chunks) * chunk, c1 = std::min(H, c0 + chunk);
  float* o = me->out_ + t * me->out_row_;
  const float* y = me->y_.data() + static_cast<std::size_t>(t * me->slots_ * H);
  // The slots of a column block summed in registers and stored once (o is written, never read:
  // a slot loop over o re-read and re-wrote it per slot). Same additions in the same order.
  constexpr std::int64_t block = 64;
  for (std::int64_t c = c0; c < c1; c += block) {
    const std::int64_t n = std::min(block, c1 - c);
    float acc[block];
    for (std::int64_t j = 0; j < n; ++j) acc[j] = y[c + j];
    for (std::int64_t s = 1; s < me->slots_; ++s)
      for (std::int64_t j = 0; j < n; ++j) acc[j] += y[s * H + c + j];
    for (std::int64_t j = 0; j < n; ++j) o[c + j] = acc[j];
  }
}

void moe_engine::forward(const moereg_tensor_view& x, const moereg_tensor_view& ids, const moereg_tensor_view& weights,
                         moereg_tensor_view& out) {
  if (x.memory != MOEREG_MEMORY_HOST || ids.memory != MOEREG_MEMORY_HOST || weights.memory != MOEREG_MEMORY_HOST ||
      out.memory != MOEREG_MEMORY_HOST)
    throw std::invalid_argument("forward: expected every view in host memory");
  if (x.dtype != MOEREG_DTYPE_F32 && x.dtype != MOEREG_DTYPE_BF16)
    throw unsupported(std::string("x: dtype ") + dtype_label(x.dtype) + " is not supported (expected F32 or BF16)");
  if (x.rank != 2) throw std::invalid_argument("x: expected shape [T, " + std::to_string(hidden_) + "], found " + shape_text(x));
  const std::int64_t T = x.shape[0];
  if (ids.rank != 2 || ids.shape[0] != T)
    throw std::invalid_argument("topk_ids: expected shape [" + std::to_string(T) + ", K], found " + shape_text(ids));
  const std::int64_t K = ids.shape[1];
  if (K <= 0) throw std::invalid_argument("topk_ids: expected K > 0");
  if (ids.dtype != MOEREG_DTYPE_I32 && ids.dtype != MOEREG_DTYPE_I64)
    throw std::invalid_argument(std::string("topk_ids: expected I32 or I64, found ") + dtype_label(ids.dtype));
  if (weights.dtype != MOEREG_DTYPE_F32 || weights.rank != 2 || weights.shape[0] != T || weights.shape[1] != K)
    throw std::invalid_argument("topk_weights: expected F32 " + dims_text({T, K}) + ", found " + dtype_label(weights.dtype) +
                                " " + shape_text(weights));
  expect_shape(x, "x", {T, hidden_});
  if (out.dtype != MOEREG_DTYPE_F32) throw std::invalid_argument(std::string("out: expected F32, found ") + dtype_label(out.dtype));
  expect_shape(out, "out", {T, hidden_});
  if (T == 0) return;

  phase_clock clock{phase_seconds_, phases_};
  ++forwards_;
  reserve(T, K);
  x_ = static_cast<const char*>(x.data);
  x_type_ = x.dtype == MOEREG_DTYPE_BF16 ? elem_bf16 : elem_f32;
  x_row_ = x.strides[0] * static_cast<std::int64_t>(elem_bytes(x_type_));
  tokens_ = T;
  top_k_ = K;
  slots_ = K + (has_shared_ ? 1 : 0);
  out_ = static_cast<float*>(out.data);
  out_row_ = out.strides[0];

  // Counting sort of (token, k) by expert; the shared expert is bucket E, every token.
  const std::size_t nb = experts_.size();
  std::fill(bucket_fill_.begin(), bucket_fill_.end(), 0);
  auto id_at = [&](std::int64_t t, std::int64_t k) -> std::int64_t {
    std::int64_t off = t * ids.strides[0] + k * ids.strides[1];
    return ids.dtype == MOEREG_DTYPE_I64 ? static_cast<const std::int64_t*>(ids.data)[off]
                                         : static_cast<const std::int32_t*>(ids.data)[off];
  };
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t k = 0; k < K; ++k) {
      std::int64_t e = id_at(t, k);
      if (e < 0 || e >= num_experts_)
        throw std::invalid_argument("topk_ids[" + std::to_string(t) + ", " + std::to_string(k) + "] = " + std::to_string(e) +
                                    ", expected 0.." + std::to_string(num_experts_ - 1));
      ++bucket_fill_[static_cast<std::size_t>(e)];
    }
  if (has_shared_) bucket_fill_[nb - 1] = T;
  bucket_begin_[0] = 0;
  for (std::size_t e = 0; e < nb; ++e) bucket_begin_[e + 1] = bucket_begin_[e] + bucket_fill_[e];
  for (std::size_t e = 0; e < nb; ++e) bucket_fill_[e] = bucket_begin_[e];
  const float* wv = static_cast<const float*>(weights.data);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t k = 0; k < K; ++k) {
      std::size_t p = static_cast<std::size_t>(bucket_fill_[static_cast<std::size_t>(id_at(t, k))]++);
      row_token_[p] = static_cast<std::int32_t>(t);
      row_slot_[p] = static_cast<std::int32_t>(t * slots_ + k);
      row_weight_[p] = wv[t * weights.strides[0] + k * weights.strides[1]];
    }
  if (has_shared_) {
    for (std::int64_t t = 0; t < T; ++t) {
      std::size_t p = static_cast<std::size_t>(bucket_begin_[nb - 1] + t);
      row_token_[p] = static_cast<std::int32_t>(t);
      row_slot_[p] = static_cast<std::int32_t>(t * slots_ + K);
      float g = 1.0f;
      if (shared_gate_) {
        // sigmoid(x . g): one dot per token, in double (cheap next to the experts).
        double acc = 0;
        const char* xr = x_ + t * x_row_;
        for (std::int64_t h = 0; h < hidden_; ++h)
          acc += static_cast<double>(load_elem(xr, x_type_, h)) * load_elem(shared_gate_, shared_gate_type_, h);
        float dot = static_cast<float>(acc);
        if (x_type_ == elem_bf16) dot = bf16_value(to_bf16(dot));
        g = 1.0f / (1.0f + std::exp(-dot));
      }
      row_weight_[p] = g;
    }
  }

  clock.lap(phase_sort);
  if (plan_unit()) pool_->run(unit_tiles_, &run_pack, this);
  if (int_dot_) {
    // The integer experts: which take the AMX INT8 unit, and every token's x quantized once.
    for (std::size_t e = 0; e < static_cast<std::size_t>(num_experts_); ++e)
      int_unit_[e] = kernels_.ints.unit.name && bucket_begin_[e + 1] - bucket_begin_[e] >= std::max(1, kernels_.int_unit_min_rows);
    pool_->run(T, &run_quantize_x, this);
    if (plan_int_pack()) {
      int_pack_h_ = false;
      pool_->run(int_tiles_, &run_int_pack, this);
    }
  }
  if (h_.empty())
    for (std::size_t e = 0; e < nb; ++e)
      if (bucket_begin_[e + 1] > bucket_begin_[e] && !on_unit(e) && !int_bucket(e)) {
        size_vector_h();
        break;
      }
  clock.lap(phase_pack);
  plan_items(false);
  run_by_node(static_cast<std::int64_t>(items_.size()), &run_gate_up, [this](std::int64_t i) { return items_[static_cast<std::size_t>(i)].expert; });
  clock.lap(phase_gate_up);
  if (int_dot_) {
    pool_->run(bucket_begin_[static_cast<std::size_t>(num_experts_)], &run_quantize_h, this);  // h of the routed rows
    if (int_tiles_) {
      int_pack_h_ = true;
      pool_->run(int_tiles_, &run_int_pack, this);
    }
  }
  plan_items(true);
  run_by_node(static_cast<std::int64_t>(items_.size()), &run_down, [this](std::int64_t i) { return items_[static_cast<std::size_t>(i)].expert; });
  clock.lap(phase_down);
  sum_chunk_ = T >= 4 * pool_->size() ? hidden_ : std::max<std::int64_t>(256, (hidden_ + 7) / 8);
  pool_->run(T * ((hidden_ + sum_chunk_ - 1) / sum_chunk_), &run_sum, this);
  clock.lap(phase_sum);
}

moe_engine::~moe_engine() {
  if (!phases_ || !forwards_) return;
  // The first forward of a size also faults in the weights and scratch: the last one shows
  // the steady state.
  const double* t = phase_seconds_;
  const double* l = phase_seconds_ + phase_count;
  std::fprintf(stderr,
               "moereg cpu phases, ms: sort %.3f, pack %.3f, gate/up %.3f, down %.3f, sum %.3f in the last forward; "
               "%.1f, %.1f, %.1f, %.1f, %.1f over all %llu\n",
               1e3 * l[phase_sort], 1e3 * l[phase_pack], 1e3 * l[phase_gate_up], 1e3 * l[phase_down], 1e3 * l[phase_sum],
               1e3 * t[phase_sort], 1e3 * t[phase_pack], 1e3 * t[phase_gate_up], 1e3 * t[phase_down], 1e3 * t[phase_sum],
               static_cast<unsigned long long>(forwards_));
}

}  // namespace moereg::cpu
