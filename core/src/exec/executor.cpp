// SPDX-License-Identifier: Apache-2.0
#include "moereg/exec/executor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <unordered_map>

#include "moereg/base/error.h"
#include "moereg/base/parallel.h"
#include "moereg/exec/dequantize_view.h"
#include "moereg/gguf/ggml_dequant.h"
#include "moereg/gguf/ggml_type.h"
#include "moereg/tensor/finite.h"

namespace moereg {

namespace {

// Element casts of whole pass-through tensors: BF16/F16 -> F32 widen exactly (norms and routers
// of a .gguf); F32 -> BF16 narrows only values the narrow type holds exactly, so a
// widened tensor comes back bit for bit and anything else is refused rather than rounded.
void cast_elements(dtype from, const std::byte* src, dtype to, std::vector<std::byte>& out, std::uint64_t count,
                   const std::string& name) {
  out.resize(count * dtype_size(to));
  if (to == dtype::F32 && (from == dtype::BF16 || from == dtype::F16)) {
    for (std::uint64_t i = 0; i < count; ++i) {
      std::uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      float f = from == dtype::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
      std::memcpy(out.data() + 4 * i, &f, 4);
    }
    return;
  }
  if (from == dtype::F32 && to == dtype::BF16) {
    for (std::uint64_t i = 0; i < count; ++i) {
      float f;
      std::memcpy(&f, src + 4 * i, 4);
      std::uint16_t h = f32_to_bf16(f);
      float back = bf16_to_f32(h);
      if (std::memcmp(&back, &f, 4) != 0 && !(std::isnan(f) && std::isnan(back)))
        throw error("tensor '" + name + "': F32 value " + std::to_string(f) + " at element " + std::to_string(i) +
                    " is not exactly representable in BF16" +
                    ", so the F32 tensor was not widened from it; refusing to round");
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
    return;
  }
  throw error("tensor '" + name + "': no element cast from " + std::string(dtype_name(from)) + " to " + std::string(dtype_name(to)));
}

// A decoded block-quantized tensor holds only finite values (see the call).
void refuse_non_finite(const checkpoint::entry& source, const float* v, std::int64_t count, std::int64_t row) {
  const std::int64_t i = first_non_finite(dtype::F32, v, count);
  if (i < 0) return;
  throw error(source.file->path() + ": " + source.info->name + ": decoded element [" + std::to_string(i / row) + ", " +
              std::to_string(i % row) + "] is " + (std::isnan(v[i]) ? "NaN" : "infinite") +
              " (its block's scale is not finite, or overflows); expected finite weights");
}

// The ggml type a stored tensor's bytes decode as: its blocks, or its element type.
ggml_type decode_type_of(const tensor_info& t) {
  if (t.ggml_blocks) return static_cast<ggml_type>(*t.ggml_blocks);
  if (std::optional<ggml_type> g = ggml_type_for(t.type)) return *g;
  throw error("tensor '" + t.name + "': " + std::string(dtype_name(t.type)) + " has no ggml type to decode");
}

// Float32 values stored as `to` (F32, or BF16 rounded once to nearest even) at element `at`
// of dst, `step` elements apart.
void store_floats(const float* x, std::int64_t n, dtype to, std::byte* dst, std::int64_t at, std::int64_t step) {
  for (std::int64_t i = 0; i < n; ++i) {
    const std::size_t k = static_cast<std::size_t>(at + i * step);
    if (to == dtype::F32) {
      std::memcpy(dst + 4 * k, &x[i], 4);
    } else {
      const std::uint16_t h = f32_to_bf16(x[i]);
      std::memcpy(dst + 2 * k, &h, 2);
    }
  }
}

template <typename T>
void copy_typed(const matrix_view& s, T* dst, std::int64_t dr, std::int64_t dc) {
  const T* src = reinterpret_cast<const T*>(s.source->data()) + s.offset;
  // Tiles keep both the strided reads and the strided writes in cache for transposes.
  constexpr std::int64_t tile = 64;
  for (std::int64_t r0 = 0; r0 < s.rows; r0 += tile)
    for (std::int64_t c0 = 0; c0 < s.cols; c0 += tile) {
      std::int64_t r1 = std::min(s.rows, r0 + tile), c1 = std::min(s.cols, c0 + tile);
      for (std::int64_t r = r0; r < r1; ++r)
        for (std::int64_t c = c0; c < c1; ++c) {
          T v;
          std::memcpy(&v, src + r * s.row_stride + c * s.col_stride, sizeof(T));
          std::memcpy(dst + r * dr + c * dc, &v, sizeof(T));
        }
    }
}

// The file range a view covers.
std::pair<std::uint64_t, std::uint64_t> file_range(const matrix_view& v) {
  std::uint64_t esize = v.element_size();
  std::uint64_t begin = v.source->file->data_offset() + v.source->info->begin + v.offset * esize;
  std::uint64_t span = (static_cast<std::uint64_t>((v.rows - 1) * v.row_stride + (v.cols - 1) * v.col_stride) + 1) * esize;
  return {begin, span};
}

// Files are mapped with MADV_RANDOM (opening reads headers only), so ask for read-ahead of
// exactly what is about to be copied: without it every 4 KiB page is one synchronous read.
void acquire(const matrix_view& v) {
  auto [begin, span] = file_range(v);
  v.source->file->file().will_need(begin, span);
}

// Release the source pages a view covered: they were read once and are not needed again.
void release(const matrix_view& v) {
  auto [begin, span] = file_range(v);
  v.source->file->file().dont_need(begin, span);
}

// A dequantized [rows, cols] piece into a slot of [rows_total, cols] (or its transpose) at row r0.
void place_bf16(const std::uint16_t* src, std::int64_t rows, std::int64_t cols, std::uint16_t* dst, std::int64_t r0,
                std::int64_t rows_total, std::int64_t slot_cols, bool transpose) {
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c)
      dst[transpose ? c * rows_total + r0 + r : (r0 + r) * slot_cols + c] = src[r * cols + c];
}

// A staged [rows, cols] matrix written [cols, rows].
void copy_staged_transposed(const matrix_view& shape, const std::byte* src, std::byte* dst) {
  const std::size_t es = dtype_size(shape.type);
  constexpr std::int64_t tile = 64;
  for (std::int64_t r0 = 0; r0 < shape.rows; r0 += tile)
    for (std::int64_t c0 = 0; c0 < shape.cols; c0 += tile)
      for (std::int64_t r = r0; r < std::min(shape.rows, r0 + tile); ++r)
        for (std::int64_t c = c0; c < std::min(shape.cols, c0 + tile); ++c)
          std::memcpy(dst + static_cast<std::size_t>(c * shape.rows + r) * es, src + static_cast<std::size_t>(r * shape.cols + c) * es, es);
}

struct work_item {
  std::size_t output;
  std::size_t tensor_index;  // index in the shard writer
  std::size_t slot;
};

}  // namespace

void copy_matrix(const matrix_view& src, std::byte* dst, std::int64_t dr, std::int64_t dc) {
  if (src.col_stride == 1 && dc == 1) {
    std::size_t row_bytes = static_cast<std::size_t>(src.cols) * src.element_size();
    for (std::int64_t r = 0; r < src.rows; ++r)
      std::memcpy(dst + static_cast<std::size_t>(r * dr) * src.element_size(), src.at(r, 0), row_bytes);
    return;
  }
  switch (src.element_size()) {
    case 1: copy_typed(src, reinterpret_cast<std::uint8_t*>(dst), dr, dc); break;
    case 2: copy_typed(src, reinterpret_cast<std::uint16_t*>(dst), dr, dc); break;
    case 4: copy_typed(src, reinterpret_cast<std::uint32_t*>(dst), dr, dc); break;
    case 8: copy_typed(src, reinterpret_cast<std::uint64_t*>(dst), dr, dc); break;
    default: throw error("copy_matrix: unsupported element size");
  }
}

namespace {

// The work of one plan, in the order threads take it. Shards are taken in windows of
// `threads` shards; inside a window the items of its shards are interleaved, so every thread
// can write a different file (one writer per file at a time) and the window's shards progress
// together. Windows complete in order, so an interrupted run leaves the first shards complete
// for --resume.
struct work_schedule {
  std::vector<work_item> items;
  std::vector<std::size_t> shard_of;                  // per item
  std::vector<std::size_t> remaining;                 // per shard: items left (initial counts)
  std::vector<std::size_t> first_rank;                // per output: plan rank of its first item
};

work_schedule schedule(const conversion_plan& plan, const checkpoint_writer& writer, const std::vector<bool>& skip,
                       unsigned threads) {
  std::unordered_map<std::string_view, std::size_t> by_name;
  for (std::size_t i = 0; i < plan.outputs.size(); ++i) by_name.emplace(plan.outputs[i].spec.name, i);
  const std::size_t shards = writer.shards().size();
  work_schedule w;
  std::vector<std::vector<work_item>> per_shard(shards);
  w.remaining.assign(shards, 0);
  for (std::size_t s = 0; s < shards; ++s) {
    if (s < skip.size() && skip[s]) continue;
    const auto& tensors = writer.shards()[s].tensors;
    for (std::size_t t = 0; t < tensors.size(); ++t) {
      const std::size_t o = by_name.at(tensors[t].name), slots = plan.outputs[o].items();
      for (std::size_t k = 0; k < slots; ++k) per_shard[s].push_back({o, t, k});
      w.remaining[s] += slots;
    }
  }
  for (std::size_t w0 = 0; w0 < shards; w0 += threads) {
    const std::size_t w1 = std::min<std::size_t>(shards, w0 + threads);
    // Round robin by bytes would balance better; by items is enough: within one checkpoint the
    // items of a shard are mostly expert slots of one size.
    for (std::size_t k = 0;; ++k) {
      bool any = false;
      for (std::size_t s = w0; s < w1; ++s)
        if (k < per_shard[s].size()) {
          w.items.push_back(per_shard[s][k]);
          w.shard_of.push_back(s);
          any = true;
        }
      if (!any) break;
    }
  }
  // Plan order of each item, so that a failure is reported the same with any thread count
  // (the interleaving above depends on it): outputs in plan order, slots in order.
  w.first_rank.assign(plan.outputs.size() + 1, 0);
  for (std::size_t o = 0; o < plan.outputs.size(); ++o) w.first_rank[o + 1] = w.first_rank[o] + plan.outputs[o].items();
  return w;
}

// Per-thread buffers, reused from item to item.
struct scratch {
  std::vector<std::byte> stage, stage2, cast, gather;
  std::vector<float> floats;  // ggml rows decoded
  dequantize_scratch dq;
};

// Writes the items of one plan: one writer per kind of output (literal bytes, a stored
// tensor, a slot of an assembled one), each taking the file's lock only for its writes.
class plan_writer {
 public:
  plan_writer(const conversion_plan& plan, const execute_options& options) : plan_(plan), options_(options) {}

  // Item `slot` of output o (0 unless o is assembled). Returns the bytes it wrote (the
  // output's, which differ from the source's where a dtype or a ggml decoding changes sizes).
  std::uint64_t item(const output_tensor& o, std::size_t slot, tensor_sink& w, std::size_t index, std::mutex& file_lock,
                     scratch& sc) const {
    if (const literal_output* l = o.literal()) return literal(*l, w, index, file_lock);
    if (const stored_output* st = o.stored()) return stored(o, *st, w, index, file_lock, sc);
    return assembled_slot(o, *o.assembled(), slot, w, index, file_lock, sc);
  }

 private:
  // Literal bytes the planner made (trivial companions).
  static std::uint64_t literal(const literal_output& l, tensor_sink& w, std::size_t index, std::mutex& file_lock) {
    std::lock_guard<std::mutex> lock(file_lock);
    w.write(index, 0, l.bytes->data(), l.bytes->size());
    return l.bytes->size();
  }

  // A stored tensor: copied by the kernel, or staged through its hooks and edit.
  std::uint64_t stored(const output_tensor& out, const stored_output& o, tensor_sink& w, std::size_t index, std::mutex& file_lock,
                       scratch& sc) const {
    const std::byte* src = o.source->data();
    const std::uint64_t n = o.source->info->nbytes(), at = o.source->file->data_offset() + o.source->info->begin;
    if (o.decode_hook.empty() && o.encode_hook.empty() && !out.edit && !o.cast_from && !o.ggml_decode) {
      std::lock_guard<std::mutex> lock(file_lock);
      if (options_.kernel_copy)
        w.copy_from_file(index, 0, o.source->file->file().fd(), at, n, src);
      else
        w.write(index, 0, src, n);
    } else {
      o.source->file->file().will_need(at, n);
      sc.stage.resize(n);
      sc.stage2.resize(n);
      const std::byte* cur = src;
      // Hooks see the source's elements before a narrowing or ggml decoding, and a widening
      // before the encode hook: a .gguf's F32 norms are encoded (llama.cpp's converter adds its
      // 1 in float32) and decoded as F32, never rounded through the narrower type.
      tensor_spec hook_spec = out.spec;
      if (o.cast_from) hook_spec.type = *o.cast_from;
      if (o.ggml_decode) hook_spec = {out.spec.name, o.source->info->type, o.source->info->shape, o.source->info->ggml_blocks};
      if (!o.decode_hook.empty()) {
        options_.hooks(o.decode_hook, 0, o.source->info->name, hook_spec, cur, sc.stage.data());
        cur = sc.stage.data();
      }
      if (out.edit) {
        if (cur != sc.stage.data()) std::memcpy(sc.stage.data(), cur, n);
        cur = sc.stage.data();
        out.edit(0, sc.stage.data());
      }
      std::uint64_t out_n = n;
      const bool widen_first = o.cast_from && !o.ggml_decode && !o.encode_hook.empty() && out.spec.type == dtype::F32;
      if (widen_first) {
        cast_elements(*o.cast_from, cur, out.spec.type, sc.cast, n / dtype_size(*o.cast_from), out.spec.name);
        cur = sc.cast.data();
        out_n = sc.cast.size();
        hook_spec.type = out.spec.type;
      }
      if (!o.encode_hook.empty()) {
        std::byte* dst = nullptr;
        if (cur == sc.stage.data()) {
          dst = sc.stage2.data();
        } else {
          sc.stage.resize(std::max<std::uint64_t>(n, out_n));
          dst = sc.stage.data();
        }
        options_.hooks(o.encode_hook, 1, out.spec.name, hook_spec, cur, dst);
        cur = dst;
      }
      if (o.ggml_decode) {
        std::int64_t count = 1;
        for (std::int64_t d : out.spec.shape) count *= d;
        sc.floats.resize(static_cast<std::size_t>(count));
        ggml_dequantize(decode_type_of(*o.source->info), cur, sc.floats.data(), count);
        // Block types only: a NaN or infinite block scale (f16 d, or a 31 E8M0 exponent) makes
        // its whole block non-finite, which ggml passes on; a converted checkpoint would hold
        // it as weights. Plain F16/F32 elements are data and are cast as they are.
        if (o.source->info->ggml_blocks) refuse_non_finite(*o.source, sc.floats.data(), count, out.spec.shape.back());
        sc.cast.resize(out.spec.nbytes());
        store_floats(sc.floats.data(), count, out.spec.type, sc.cast.data(), 0, 1);
        cur = sc.cast.data();
        out_n = sc.cast.size();
      } else if (o.cast_from && !widen_first) {
        cast_elements(*o.cast_from, cur, out.spec.type, sc.cast, n / dtype_size(*o.cast_from), out.spec.name);
        cur = sc.cast.data();
        out_n = sc.cast.size();
      }
      std::lock_guard<std::mutex> lock(file_lock);
      w.write(index, 0, cur, out_n);
    }
    o.source->file->file().dont_need(at, n);
    return out.spec.nbytes();
  }

  // One slot of an assembled tensor: its pieces copied as they lie when they are contiguous
  // and untouched, else assembled (transposed, decoded, edited) in the thread's staging buffer.
  std::uint64_t assembled_slot(const output_tensor& out, const assembled_output& o, std::size_t slot, tensor_sink& w,
                               std::size_t index, std::mutex& file_lock, scratch& sc) const {
    const auto& pieces = o.slots[slot];
    const std::size_t esize = dtype_size(out.spec.type);
    const std::uint64_t slot_bytes = static_cast<std::uint64_t>(o.rows_total * o.cols) * esize, base = slot * slot_bytes;
    const bool direct = !o.transpose && o.decoding == piece_decoding::copy && !out.edit &&
                        std::all_of(pieces.begin(), pieces.end(), [](const matrix_view& v) { return v.contiguous(); });
    if (direct) {
      std::lock_guard<std::mutex> lock(file_lock);
      std::uint64_t at = base;
      for (const auto& v : pieces) {
        if (options_.kernel_copy)
          w.copy_from_file(index, at, v.source->file->file().fd(), file_range(v).first, v.nbytes(), v.at(0, 0));
        else
          w.write(index, at, v.at(0, 0), v.nbytes());
        at += v.nbytes();
      }
    } else {
      for (const auto& v : pieces) acquire(v);
      const std::byte* staged = stage_slot(out, o, slot, sc);
      std::lock_guard<std::mutex> lock(file_lock);
      w.write(index, base, staged, slot_bytes);
    }
    for (const auto& v : pieces) release(v);
    return slot_bytes;
  }

  // The slot as it is written: pieces placed (dequantized, transposed), then edited.
  const std::byte* stage_slot(const output_tensor& out, const assembled_output& o, std::size_t slot, scratch& sc) const {
    const auto& pieces = o.slots[slot];
    const std::size_t esize = dtype_size(out.spec.type);
    const std::uint64_t slot_bytes = static_cast<std::uint64_t>(o.rows_total * o.cols) * esize;
    sc.stage.resize(slot_bytes);
    std::int64_t row_off = 0;
    // An edit sees the slot untransposed; the transpose then happens after it.
    const bool transpose_now = o.transpose && !out.edit;
    for (std::size_t k = 0; k < pieces.size(); ++k) {
      const matrix_view& v = pieces[k];
      if (o.decoding == piece_decoding::ggml) {
        decode_rows(v, out.spec.type, o, row_off, transpose_now, sc);
      } else if (o.decoding == piece_decoding::dequantize) {
        const piece_scales& ps = o.slot_scales[slot][k];
        sc.dq.out.resize(static_cast<std::size_t>(ps.grid.rows * ps.grid.cols));
        dequantize_view(v, ps, plan_.source->quant, sc.dq.out.data(), sc.dq);
        place_bf16(sc.dq.out.data(), ps.grid.rows, ps.grid.cols, reinterpret_cast<std::uint16_t*>(sc.stage.data()), row_off,
                   o.rows_total, o.cols, transpose_now);
      } else if (transpose_now) {
        copy_matrix(v, sc.stage.data() + static_cast<std::size_t>(row_off) * esize, 1, o.rows_total);
      } else {
        copy_matrix(v, sc.stage.data() + static_cast<std::size_t>(row_off * o.cols) * esize, o.cols, 1);
      }
      row_off += v.rows;
    }
    if (!out.edit) return sc.stage.data();
    out.edit(slot, sc.stage.data());
    if (!o.transpose) return sc.stage.data();
    sc.stage2.resize(slot_bytes);
    matrix_view whole;
    whole.rows = o.rows_total;
    whole.cols = o.cols;
    whole.row_stride = o.cols;
    whole.col_stride = 1;
    whole.type = out.spec.type;
    copy_staged_transposed(whole, sc.stage.data(), sc.stage2.data());
    return sc.stage2.data();
  }

  // A piece of ggml rows (or F16/BF16/F32 rows) decoded row by row into the slot at row r0.
  static void decode_rows(const matrix_view& v, dtype to, const assembled_output& o, std::int64_t r0, bool transpose,
                          scratch& sc) {
    const tensor_info& t = *v.source->info;
    const ggml_type g = decode_type_of(t);
    const auto& tr = ggml_traits(g);
    const std::int64_t values = t.ggml_blocks ? v.cols / static_cast<std::int64_t>(tr.type_size) * static_cast<std::int64_t>(tr.block_size) : v.cols;
    if (v.col_stride != 1 && t.ggml_blocks)  // a .gguf stores blocks in whole rows
      throw error("tensor '" + t.name + "': decoding needs whole rows, this view is strided");
    sc.floats.resize(static_cast<std::size_t>(values));
    for (std::int64_t r = 0; r < v.rows; ++r) {
      const std::byte* row = v.at(r, 0);
      if (v.col_stride != 1) {  // a transposed float part (a split tensor's): its row gathered first
        const std::size_t es = v.element_size();
        sc.gather.resize(static_cast<std::size_t>(v.cols) * es);
        for (std::int64_t c = 0; c < v.cols; ++c) std::memcpy(sc.gather.data() + static_cast<std::size_t>(c) * es, v.at(r, c), es);
        row = sc.gather.data();
      }
      ggml_dequantize(g, row, sc.floats.data(), values);
      if (transpose) store_floats(sc.floats.data(), values, to, sc.stage.data(), r0 + r, o.rows_total);
      else store_floats(sc.floats.data(), values, to, sc.stage.data(), (r0 + r) * o.cols, 1);
    }
  }

  const conversion_plan& plan_;
  const execute_options& options_;
};

}  // namespace

void execute_plan(const conversion_plan& plan, checkpoint_writer& writer, const execute_options& options) {
  const unsigned threads = resolve_threads(options.threads);
  const work_schedule work = schedule(plan, writer, options.skip_shards, threads);
  const std::size_t shards = writer.shards().size();
  std::unique_ptr<std::atomic<std::size_t>[]> remaining(new std::atomic<std::size_t>[shards]);
  for (std::size_t s = 0; s < shards; ++s) remaining[s] = work.remaining[s];
  std::vector<tensor_sink*> open(shards, nullptr);
  std::unique_ptr<std::once_flag[]> opened(new std::once_flag[shards]);
  // One writer at a time per output file. Buffered writes and copy_file_range take the file's
  // inode lock in the kernel, and threads contending for it spin there: measured on a 16-core
  // host, 16 threads copying into one file burned 40 s of system time for 6 GB and took 1.3x
  // as long as one thread. Waiting here sleeps instead; staging (transposes, hooks) still runs
  // in parallel, and different shards are written at the same time.
  std::unique_ptr<std::mutex[]> file_lock(new std::mutex[shards]);
  std::mutex done_mutex;  // on_shard_done is called one shard at a time
  std::vector<scratch> scratches(threads);
  const plan_writer write(plan, options);

  auto run_item = [&](std::size_t i, unsigned worker) {
    const work_item& it = work.items[i];
    const std::size_t s = work.shard_of[i];
    std::call_once(opened[s], [&] { open[s] = &writer.open_shard(s, options.metadata); });
    const output_tensor& o = plan.outputs[it.output];
    const std::uint64_t bytes = write.item(o, it.slot, *open[s], it.tensor_index, file_lock[s], scratches[worker]);
    if (options.progress) {
      options.progress->bytes += bytes;
      if (it.slot + 1 == o.items()) options.progress->tensors++;
    }
    if (--remaining[s] == 0) {
      writer.commit_shard(s);
      if (options.on_shard_done) {
        std::lock_guard<std::mutex> lock(done_mutex);
        options.on_shard_done(s);
      }
    }
  };
  ordered_run run;
  run.items = work.items.size();
  run.threads = threads;
  run.rank = [&](std::size_t i) { return work.first_rank[work.items[i].output] + work.items[i].slot; };
  run_ordered(run, run_item);
}

namespace {

// A sink over one caller buffer holding one tensor: what produce_tensor hands the writers.
class memory_sink final : public tensor_sink {
 public:
  memory_sink(std::byte* dst, std::uint64_t size) : dst_(dst), size_(size) {}
  const std::string& final_path() const override { return path_; }
  void write(std::size_t, std::uint64_t offset, const void* data, std::uint64_t size) override {
    if (offset > size_ || size > size_ - offset) throw error("produce_tensor: a write past the end of the tensor (a planner bug)");
    std::memcpy(dst_ + offset, data, size);
  }
  void copy_from_file(std::size_t index, std::uint64_t offset, int, std::uint64_t, std::uint64_t size,
                      const void* fallback) override {
    write(index, offset, fallback, size);
  }
  void commit() override {}

 private:
  std::byte* dst_;
  std::uint64_t size_;
  std::string path_;
};

}  // namespace

void produce_tensor(const conversion_plan& plan, std::size_t output, std::byte* dst, const execute_options& options) {
  if (output >= plan.outputs.size()) throw error("produce_tensor: no output tensor " + std::to_string(output));
  const output_tensor& o = plan.outputs[output];
  memory_sink sink(dst, o.spec.nbytes());
  std::mutex lock;
  execute_options opts = options;
  opts.kernel_copy = false;  // memory, not a file: the sink takes the mapped bytes
  const plan_writer write(plan, opts);
  // An assembled tensor's slots in parallel; any other kind is one item.
  ordered_run run;
  run.items = o.items();
  run.threads = std::min<unsigned>(resolve_threads(options.threads), static_cast<unsigned>(std::max<std::size_t>(1, run.items)));
  std::vector<scratch> scratches(run.threads);
  run_ordered(run, [&](std::size_t slot, unsigned worker) { write.item(o, slot, sink, 0, lock, scratches[worker]); });
  if (options.progress) {
    options.progress->bytes += o.spec.nbytes();
    options.progress->tensors++;
  }
}

}  // namespace moereg
