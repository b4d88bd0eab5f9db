// SPDX-License-Identifier: Apache-2.0
// cpu_moe.h - one MoE layer on the CPU: tokens grouped per expert by a counting sort, per
// expert x_e . W13_e^T -> silu(gate) * up -> . W2_e^T, scaled, then summed per token.
//
// Weights are read where they lie (the host's mapped file), except as below. The dtype
// of x sets the activation precision: BF16 x keeps the intermediate in bf16 (bf16 math,
// f32 accumulation), F32 x keeps it in f32 (weights widened exactly). Scratch is sized at
// create for `reserve_tokens` and grows only when a larger T arrives.
//
// FP8 E4M3 experts (w13/w2 with block scales) and 4-bit experts (int4, MXFP4: two codes a
// byte, a scale per row and group of inputs) are dequantized on the fly: each K pass of a
// few weight rows is widened (q x its scale) into a small per-thread f32 panel that the
// tiles then read for every token of the item. No dequantized copy of the experts is ever
// made. The same panel path serves bf16 weights on ISAs where widening inside every
// tile costs more than widening once per pass (kernel_table::panel_min_rows).
//
// With a matrix unit (AMX; kernel_table::unit) experts that have enough tokens run there
// instead (cpu_moe_unit.cpp): their bf16 activations are repacked once per forward into the
// unit's pair-interleaved tiles, the weights are read from a copy in the unit's tile order
// made at create (cpu_tile_weights.h; or in place without it), and h goes straight from the
// gate/up tiles into the layout the down projection's tiles read.
//
// Experts quantized at create to int8/int4 (backend option quantize) run integer products
// by default (int_dot; cpu_moe_int.cpp, cpu_moe_int_unit.cpp): activations quantized per
// token and group, int32 sums, AMX INT8 or VNNI tiles.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu_kernels.h"
#include "cpu_numa.h"
#include "cpu_thread_pool.h"
#include "cpu_tile_weights.h"
#include "moereg/abi/moereg_backend.h"

namespace moereg::cpu {

// A request this backend cannot serve (a dtype or layout it does not read): the SDK's
// error kind, which MOEREG_API_END maps to MOEREG_UNSUPPORTED.
using unsupported = moereg::plugin::unsupported;

// Online quantization at create (backend option quantize): the routed experts' bf16/f32
// weights become symmetric int8 or int4 codes with one F32 scale per output row and group
// of `group` inputs (0: the whole row), w = q x s, s = max|w| / 127 (int8) or / 7 (int4).
// Or (ggml >= 0) into ggml blocks of that elem_type, scales inside the blocks, H and I whole
// blocks (quantize=q8_0|q4_0|q4_k|q6_k; cpu_ggml_quantize.cpp).
struct online_quant {
  int bits = 0;  // 0: none; 8 or 4
  std::int64_t group = 0;
  int ggml = -1;
  // Backend option int_dot: -1 auto, 0 off, 1 on (cpu_int_dot.h; refused where it cannot apply).
  int int_dot = -1;
  bool on() const { return bits != 0 || ggml >= 0; }
};

class moe_engine {
 public:
  // Per-thread accumulators: the vector path's gate/up sums, or the matrix unit's parked tiles.
  static constexpr std::int64_t acc_floats = 256 * 2 * 64;

  // k_block: reduction elements per pass once an item has more rows than one tile (the
  // tile's operands then stay in L1 and a row block's activations in L2); 0 = default.
  // phases: time each phase of every forward, printed at destruction (option phases=1).
  // pool_spin_us: how long idle pool threads poll before sleeping (option pool_spin_us).
  moe_engine(const moereg_moe_weights& weights, int threads, const kernel_table& kernels,
             std::int64_t reserve_tokens = 64, std::int64_t k_block = 0, bool phases = false, const online_quant& quant = {},
             const numa_topology& numa = {}, int pool_spin_us = 100);

  // x [T, H] F32/BF16, ids [T, K] I32/I64, weights [T, K] F32, out [T, H] F32, all host.
  // Throws std::invalid_argument naming the view and what was expected.
  void forward(const moereg_tensor_view& x, const moereg_tensor_view& ids, const moereg_tensor_view& weights,
               moereg_tensor_view& out);

  // With phases on, prints the time spent in each phase of all forwards to stderr.
  ~moe_engine();
  moe_engine(const moe_engine&) = delete;
  moe_engine& operator=(const moe_engine&) = delete;

  std::string describe() const;
  std::uint64_t scratch_bytes() const;
  std::int64_t capacity_tokens() const { return cap_tokens_; }

 private:
  // Work item limits: token rows, gate/up pairs (phase 1) or output columns (phase 2).
  static constexpr std::int64_t max_item_rows = 256;
  static constexpr std::int64_t max_item_pairs = 64;
  static constexpr std::int64_t max_item_cols = 128;
  static_assert(max_item_rows * 2 * max_item_pairs <= acc_floats);
  // Matrix-unit items: token rows in whole pairs of 16-token tiles, weight rows in whole
  // tiles (gate/up: 16 pairs, down: two 16-row tiles), at most 4 x 8 blocks of four 16 x 16
  // accumulator tiles.
  static constexpr std::int64_t unit_item_rows = 256;
  static_assert((max_item_pairs / 16) * (unit_item_rows / 32) * 1024 <= acc_floats);
  static_assert((max_item_cols / 32) * (unit_item_rows / 32) * 1024 <= acc_floats);

  struct expert {
    const char* w13 = nullptr;  // row r at w13 + r * w13_row; rows [0, I) gate, [I, 2I) up
    std::int64_t w13_row = 0;
    const char* w2 = nullptr;   // [H, I]
    std::int64_t w2_row = 0;
    int w13_type = elem_bf16;
    int w2_type = elem_bf16;
    std::int64_t inter = 0;
    // FP8 block scales (nullptr otherwise): scale row of w13 row r is r / b0 for gate rows,
    // ceil(I / b0) + (r - I) / b0 for up rows; of w2 row n, n / b0.
    const float* w13_scale = nullptr;
    std::int64_t w13_scale_row = 0;  // floats between scale rows
    const float* w2_scale = nullptr;
    std::int64_t w2_scale_row = 0;
    // The matrix unit's tile-ordered copies (kernels_.unit.tile_weights), nullptr otherwise:
    // w13's gate tiles, then its up tiles, ceil32(H) / 32 steps each; w2's with ceil32(I) / 32.
    const std::uint16_t* t13 = nullptr;
    const std::uint16_t* t2 = nullptr;
  };
  struct item {
    std::int32_t expert;
    std::int32_t row0, row1;  // rows of the expert's bucket
    std::int32_t col0, col1;  // gate/up pairs (phase 1) or output columns (phase 2)
  };

  // Checks GGUF experts (weight_quant 3) and gives their element types.
  static void ggml_experts(const moereg_moe_weights& w, int& t13, int& t2);
  // The constructor's phases.
  std::pair<int, int> check_routed(const moereg_moe_weights& w);
  void bind_routed(const moereg_moe_weights& w, int t13, int t2);
  void bind_shared(const moereg_moe_weights& w);
  void bind_shared_scales(const moereg_moe_weights& w, expert& s);
  void quantize_at_create(const online_quant& quant, int& t13, int& t2);
  void reserve(std::int64_t tokens, std::int64_t top_k);
  void size_vector_h();  // h_ for every row of the current capacity
  void plan_items(bool down);
  static void run_gate_up(void* self, std::int64_t i, int thread);
  static void run_down(void* self, std::int64_t i, int thread);
  static void run_sum(void* self, std::int64_t i, int thread);
  void gate_up(const item& it, int thread);
  void down(const item& it, int thread);

  // Matrix-unit path (cpu_moe_unit.cpp).
  bool plan_unit();  // which buckets run on the unit this call; true if any
  bool on_unit(std::size_t bucket) const { return unit_row_[bucket] >= 0; }
  static void run_pack(void* self, std::int64_t i, int thread);
  void pack(std::int64_t tile);
  void unit_gate_up(const item& it, int thread);
  void unit_down(const item& it, int thread);
  std::int64_t unit_pass(std::int64_t k_len, std::int64_t tile_pairs) const;
  void size_unit_buffers();
  std::int64_t max_pass() const;
  // The weight tiles of the block an item runs after the current one (up to two regions of
  // `steps` contiguous KiB in the tile-ordered copy; none without it), and where the block
  // lies in its pass: what unit_blocks brings into L2 while it computes.
  struct unit_next {
    const std::uint16_t* p[2] = {nullptr, nullptr};
    std::int64_t steps = 0;
  };
  struct unit_ahead {
    unit_next a;
    std::int64_t block = 0, blocks = 1;        // this block of the pass, of how many
    std::int64_t k_next = -1, steps_next = 0;  // the next pass (-1: none)
  };
  unit_next unit_next_tiles(const expert& ex, bool down, std::int64_t n0, std::int64_t col1, std::int64_t k0,
                            std::int64_t kl) const;
  // The down GEMM's epilogue on 16 x 16 tiles, for both units: for each token tile ti of the
  // item (rows from `begin` of its bucket) and each 16-row block (j, ia) of its columns,
  // y[the token's slot][n0 ..] = routing weight x the tile at acc_at(j, ti, ia), through the
  // unit's scale_out.
  template <class At>
  void scale_down_tiles(const item& it, std::int64_t begin, std::int64_t tiles, std::int64_t blocks,
                        void (*scale_out)(const float*, int, int, const float*, float* const*), At acc_at) {
    constexpr std::int64_t n = 16;
    float* y[n];
    float* yn[n];
    float w[n];
    for (std::int64_t ti = 0; ti < tiles; ++ti) {
      const std::int64_t r0 = it.row0 + ti * n, tokens = std::min(n, it.row1 - r0);
      for (std::int64_t t = 0; t < tokens; ++t) {
        const std::size_t q = static_cast<std::size_t>(begin + r0 + t);
        y[t] = y_.data() + static_cast<std::size_t>(row_slot_[q]) * static_cast<std::size_t>(hidden_);
        w[t] = row_weight_[q];
      }
      for (std::int64_t j = 0; j < blocks; ++j)
        for (std::int64_t ia = 0; ia < 2; ++ia) {
          const std::int64_t n0 = it.col0 + 2 * n * j + n * ia;
          if (n0 >= it.col1) break;
          for (std::int64_t t = 0; t < tokens; ++t) yn[t] = y[t] + n0;
          scale_out(acc_at(j, ti, ia), static_cast<int>(std::min(n, it.col1 - n0)), static_cast<int>(tokens), w, yn);
        }
    }
#if defined(__x86_64__) || defined(__i386__)
    if (kernels_.stream_y) __builtin_ia32_sfence();  // scale_out's streaming stores, before the item counts as done
#endif
  }
  unit_ahead unit_plan_ahead(const expert& ex, bool down, const item& it, std::int64_t j, std::int64_t blocks,
                             std::int64_t n_next, std::int64_t k0, std::int64_t kp, std::int64_t k_len) const;
  void unit_blocks(const bf16_rows* a, int na, const std::uint16_t* bv, std::int64_t ks_count, std::int64_t tile0,
                   std::int64_t tiles, std::int64_t k0, std::int64_t steps, float* acc, const unit_ahead& ahead) const;
  // 16 weight rows [n0, n0 + 16) of a matrix with n_rows rows, K slice [k0, k0 + kl): in
  // place, or copied into the thread's panel (slot 0 or 1) with zeros past the matrix's rows
  // and past K (always when unit.panels).
  // With `tiles` (the matrix's tile-ordered copy, k_steps per tile row) the rows come from there.
  bf16_rows unit_rows(const char* base, std::int64_t row_bytes, const std::uint16_t* tiles, std::int64_t k_steps,
                      std::int64_t n0, std::int64_t n_rows, std::int64_t k0, std::int64_t kl, int thread, int slot) const;
  // 16 rows [n0, n0 + 16) of a quantized matrix (FP8 or 4-bit; row r's scales at scales[r - n0]),
  // K slice [k0, k0 + kl), dequantized (q x s, rounded once to bf16) into the thread's panel
  // (slot 0 or 1), zeros past the matrix's rows and past K.
  bf16_rows unit_quant_rows(const char* base, std::int64_t row_bytes, int type, const float* const* scales, std::int64_t n0,
                            std::int64_t n_rows, std::int64_t k0, std::int64_t kl, int thread, int slot) const;
  // The 16 weight rows from n0 of an expert's gate (part 0), up (1) or down (2) matrix, as
  // the unit reads them: tile-ordered copy, in place, or panels (unit_rows, unit_quant_rows).
  bf16_rows unit_weight_rows(const expert& ex, int part, std::int64_t n0, std::int64_t k0, std::int64_t kl, int thread,
                             int slot) const;
  // The online quantization (cpu_quantize.cpp): codes and scales into quant_memory_, on all
  // threads, and the routed experts pointed at them.
  void quantize_experts(const online_quant& q);
  struct quant_job {
    std::int64_t expert;
    const char* src;
    std::int64_t src_row;  // bytes
    int src_type;
    std::int64_t rows, k;
    char* dst;
    std::int64_t dst_row;  // bytes
    float* scales;         // [rows, groups]
  };
  static void run_quant_job(void* self, std::int64_t i, int thread);
  std::vector<quant_job> quant_jobs_;  // during quantize_experts only
  online_quant quant_;
  tile_memory quant_memory_;
  double quant_seconds_ = 0;
  // Integer products (int_dot; cpu_moe_int.cpp on the vector tiles, cpu_moe_int_unit.cpp on
  // AMX INT8): the routed experts' int8/int4 codes times activations quantized per forward.
  void setup_int_dot(const online_quant& q);
  bool int_bucket(std::size_t e) const { return int_dot_ && e < static_cast<std::size_t>(num_experts_); }
  bool int_on_unit(std::size_t e) const { return int_unit_.size() > e && int_unit_[e]; }
  void size_int_buffers();
  // Quantizes the activation rows [r0, r1) of `src` (row r at src + r * src_row bytes, x's or
  // f32 type) into codes, scales and chunk sums (cpu_int_dot.h's act_rows).
  struct act_rows {
    std::vector<std::int8_t> q;
    std::vector<float> scale;
    std::vector<std::int32_t> sum;
    std::int64_t k = 0, row = 0, groups = 0, chunks = 0;  // row: codes per row (whole chunks)
    void size(std::int64_t rows, std::int64_t k_len, std::int64_t group);
    const std::int8_t* codes(std::int64_t r) const { return q.data() + r * row; }
    const float* scales(std::int64_t r) const { return scale.data() + r * groups; }
    const std::int32_t* sums(std::int64_t r) const { return sum.data() + r * chunks; }
  };
  void quantize_acts(act_rows& dst, const char* src, std::int64_t src_row, int src_type, std::int64_t r, std::int64_t src_r) const;
  static void run_quantize_x(void* self, std::int64_t i, int thread);
  static void run_quantize_h(void* self, std::int64_t i, int thread);
  void int_gate_up(const item& it, int thread);
  void int_down(const item& it, int thread);
  void int_unit_gate_up(const item& it, int thread);
  void int_unit_down(const item& it, int thread);
  // K passes of the unit, in 64-element chunks: long ones for one pair of token tiles (each
  // weight read once anyway), k_block ones otherwise; the per-thread panels they need.
  std::int64_t int_long_chunks() const;
  std::int64_t int_short_chunks() const;
  std::int64_t int_pass_chunks(std::int64_t k_len, std::int64_t token_tiles) const;
  std::int64_t int_panel_bytes() const;  // per thread
  // The scales of weight rows [n0, n0 + 16) for group g (zeros past n_rows).
  void int_weight_scales(const float* first_row, std::int64_t scale_row, std::int64_t n0, std::int64_t n_rows, std::int64_t g,
                         float* ws) const;
  bool int_dot_ = false;
  std::int64_t int_group_ = 0;    // elements per scale, of weights and activations alike
  act_rows xq_, hq_;              // x per token; h per bucket row
  std::vector<float> hf_;         // h of the integer experts, f32 [rows, h_stride_]
  std::vector<char> int_unit_;    // per bucket: runs on the AMX INT8 unit this call
  line_vector<std::int8_t> int_panel_;  // per thread: two A panels (unit)
  // AMX INT8: the unit experts' quantized x (after quantize_x) and h (after quantize_h) packed
  // once per forward into B tiles, [tile][chunk][1 KiB] with each bucket's rows from
  // int_row_[e] padded to whole 16-token tiles, instead of by every item that reads them.
  bool plan_int_pack();
  static void run_int_pack(void* self, std::int64_t tile, int thread);
  std::vector<std::int64_t> int_row_;
  std::vector<std::int32_t> int_tile_bucket_;
  std::int64_t int_tiles_ = 0;
  bool int_pack_h_ = false;  // run_int_pack's source: xq_ or hq_
  line_vector<std::int8_t> xiv_, hiv_;
  line_vector<std::int32_t> int_c_;     // per thread: four int32 tiles (unit)

  // Copies every bf16 expert into tile_memory_ (cpu_tile_weights.h), on all threads.
  void make_tile_weights();
  struct tile_job {
    std::int64_t expert;
    const char* src;
    std::int64_t row_bytes, rows, k_len, steps;
    std::uint16_t* dst;
  };
  static void run_tile_job(void* self, std::int64_t i, int thread);
  bool use_panel(int weight_type, std::int64_t rows) const;
  // How one item runs: weights widened into panels or read in place, activations widened
  // to f32 or read in place, and the tile shape.
  struct item_plan {
    bool b_panel = false, a_widen = false;
    int tm = 1, tn = 1, a_type = elem_f32, b_type = elem_f32;
  };
  item_plan plan_for(int weight_type, std::int64_t rows) const;
  std::int64_t pass_length(const item_plan& p, std::int64_t rows, std::int64_t k_len) const;
  const float* w13_scale_row(const expert& ex, std::int64_t r) const;
  // One weight row's K slice [k0, k0 + kl) as a tile reads it: in place, or (panel) widened
  // to f32 into `dst`, FP8 times its block scales (`scale_row`).
  const void* weight_slice(const char* row, int type, std::int64_t k0, std::int64_t kl, const float* scale_row,
                           bool panel, float* dst) const;

  // Runs `count` items made in expert order (expert_of(i) never decreases) on the pool: on
  // several NUMA nodes each node's threads take their own experts' items first.
  template <class ExpertOf>
  void run_by_node(std::int64_t count, thread_pool::item_fn fn, ExpertOf expert_of) {
    const int nodes = numa_.nodes();
    if (nodes <= 1) {
      pool_->run(count, fn, this);
      return;
    }
    int n = 0;
    node_begin_[0] = 0;
    for (std::int64_t i = 0; i < count; ++i)
      for (const int en = numa_.node_of_expert(expert_of(i)); n < en;) node_begin_[static_cast<std::size_t>(++n)] = i;
    while (n < nodes) node_begin_[static_cast<std::size_t>(++n)] = count;
    pool_->run_by_node(count, fn, this, node_begin_.data(), nodes);
  }
  numa_plan numa_;                       // expert_begin {0, E} on one node
  std::vector<std::int64_t> node_begin_;  // run_by_node's scratch, nodes + 1

  std::vector<expert> experts_;  // E routed, then the shared expert if any
  std::int64_t num_experts_ = 0;
  std::int64_t hidden_ = 0;
  std::int64_t h_stride_ = 0;  // max intermediate: row length of the h scratch
  bool has_shared_ = false;
  const char* shared_gate_ = nullptr;
  int shared_gate_type_ = elem_bf16;
  std::uint64_t weight_bytes_ = 0;  // the experts as the views hold them
  std::uint64_t scale_bytes_ = 0;   // their scales
  kernel_table kernels_;
  std::unique_ptr<thread_pool> pool_;

  // Per-call state (valid during forward).
  const char* x_ = nullptr;
  std::int64_t x_row_ = 0;  // bytes
  int x_type_ = elem_f32;
  std::int64_t tokens_ = 0, top_k_ = 0, slots_ = 0;  // slots_ = K (+1 with a shared expert)
  float* out_ = nullptr;
  std::int64_t out_row_ = 0;  // floats

  // Scratch, grown only when a larger T arrives.
  std::int64_t cap_tokens_ = 0, cap_k_ = 0;
  std::vector<std::int64_t> bucket_begin_, bucket_fill_;
  std::vector<std::int32_t> row_token_, row_slot_;
  std::vector<float> row_weight_;
  std::vector<float> h_;  // [rows, h_stride_] as f32, or as bf16 in the first half
  line_vector<float> y_;  // [T * slots, H]; 64-byte aligned for the down tiles' streaming stores
  std::vector<item> items_;
  std::int64_t k_block_ = 0;
  line_vector<float> gu_acc_;  // per thread: [max_item_rows, 2 * max_item_pairs] gate/up sums across K passes
  // Panel path, per thread: widened weight rows [max_tile_n, panel_k_] and widened bf16
  // activations [max_item_rows, panel_k_]; empty when no item can take the panel path.
  std::int64_t panel_k_ = 0;
  std::vector<float> panel_b_, panel_a_;
  std::int64_t scale_b0_ = 0, scale_b1_ = 0;
  std::int64_t sum_chunk_ = 0;
  // Matrix unit: per bucket the first of its rows in the repacked buffers (padded to whole
  // 16-token tiles), or -1 when the bucket runs on the vector tiles; x and h repacked as
  // [tile][k / 32][16 pairs][16 tokens] bf16 pairs, rows of ceil32(H) and ceil32(h_stride_).
  std::vector<std::int64_t> unit_row_;
  std::vector<std::int32_t> unit_tile_bucket_;  // per repacked tile: its bucket
  std::int64_t unit_tiles_ = 0;
  std::int64_t kh32_ = 0, ki32_ = 0;
  line_vector<std::uint16_t> xv_, hv_;
  mutable line_vector<std::uint16_t> unit_panel_;  // per thread: 2 x 16 rows x max_pass()
  mutable std::vector<float> unit_widen_;          // per thread: one quantized row widened, max_pass()
  bool quantized_ = false;                         // some expert is FP8, 4-bit or ggml blocks
  tile_memory tile_memory_;          // the experts' tile-ordered copies, when made
  std::string tile_skipped_;         // why the copy the options asked for was not made ("" made or not asked)
  std::vector<tile_job> tile_jobs_;  // during make_tile_weights only
  double load_seconds_ = 0;          // spent making them
  std::uint64_t grow_count_ = 0;

  // Per-phase wall time of the forwards (option phases), for finding where time goes.
  enum phase { phase_sort, phase_pack, phase_gate_up, phase_down, phase_sum, phase_count };
  struct phase_clock {
    double* seconds;  // [phase_count] totals, then [phase_count] of the last forward
    bool on;
    std::chrono::steady_clock::time_point t = on ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    void lap(phase p) {
      if (!on) return;
      const auto now = std::chrono::steady_clock::now();
      const double d = std::chrono::duration<double>(now - t).count();
      seconds[p] += d;
      seconds[phase_count + p] = d;
      t = now;
    }
  };
  bool phases_ = false;
  int pool_spin_us_ = 100;
  std::uint64_t forwards_ = 0;
  double phase_seconds_[2 * phase_count] = {};
};

}  // namespace moereg::cpu
