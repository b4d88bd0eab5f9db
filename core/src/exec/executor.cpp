#include "moereg/exec/executor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "moereg/base/error.h"
#include "moereg/exec/dequantize_view.h"

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

void execute_plan(const conversion_plan& plan, checkpoint_writer& writer, const execute_options& options) {
  std::unordered_map<std::string_view, std::size_t> by_name;
  for (std::size_t i = 0; i < plan.outputs.size(); ++i) by_name.emplace(plan.outputs[i].spec.name, i);
  unsigned threads = options.threads > 0 ? static_cast<unsigned>(options.threads) : std::max(1u, std::thread::hardware_concurrency());

  // One work list. Shards are taken in windows of `threads` shards; inside a window the items
  // of its shards are interleaved, so every thread can write a different file (one writer per
  // file at a time, below) and the window's shards progress together. Windows complete in
  // order, so an interrupted run leaves the first shards complete for --resume.
  const std::size_t shards = writer.shards().size();
  std::vector<std::vector<work_item>> per_shard(shards);
  std::unique_ptr<std::atomic<std::size_t>[]> remaining(new std::atomic<std::size_t>[shards]);
  for (std::size_t s = 0; s < shards; ++s) {
    remaining[s] = 0;
    if (s < options.skip_shards.size() && options.skip_shards[s]) continue;
    const auto& tensors = writer.shards()[s].tensors;
    for (std::size_t t = 0; t < tensors.size(); ++t) {
      std::size_t o = by_name.at(tensors[t].name);
      std::size_t slots = plan.outputs[o].is_expert ? plan.outputs[o].slots.size() : 1;
      for (std::size_t k = 0; k < slots; ++k) per_shard[s].push_back({o, t, k});
      remaining[s] += slots;
    }
  }
  std::vector<work_item> items;
  std::vector<std::size_t> shard_of;  // per item
  for (std::size_t w0 = 0; w0 < shards; w0 += threads) {
    const std::size_t w1 = std::min<std::size_t>(shards, w0 + threads);
    // Round robin by bytes would balance better; by items is enough: within one checkpoint the
    // items of a shard are mostly expert slots of one size.
    for (std::size_t k = 0;; ++k) {
      bool any = false;
      for (std::size_t s = w0; s < w1; ++s)
        if (k < per_shard[s].size()) {
          items.push_back(per_shard[s][k]);
          shard_of.push_back(s);
          any = true;
        }
      if (!any) break;
    }
  }
  std::vector<tensor_sink*> open(shards, nullptr);
  std::unique_ptr<std::once_flag[]> opened(new std::once_flag[shards]);
  // One writer at a time per output file. Buffered writes and copy_file_range take the file's
  // inode lock in the kernel, and threads contending for it spin there: measured on a 16-core
  // host, 16 threads copying into one file burned 40 s of system time for 6 GB and took 1.3x
  // as long as one thread. Waiting here sleeps instead; staging (transposes, hooks) still runs
  // in parallel, and different shards are written at the same time.
  std::unique_ptr<std::mutex[]> file_lock(new std::mutex[shards]);
  std::mutex done_mutex;  // on_shard_done is called one shard at a time

  std::atomic<std::size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  std::atomic<bool> failed{false};
  auto worker = [&] {
    std::vector<std::byte> stage, stage2, widened;
    dequantize_scratch dq;
    try {
      for (std::size_t i; !failed && (i = next++) < items.size();) {
        const work_item& it = items[i];
        const std::size_t s = shard_of[i];
        std::call_once(opened[s], [&] { open[s] = &writer.open_shard(s, options.metadata); });
        tensor_sink& w = *open[s];
        const output_tensor& o = plan.outputs[it.output];
        if (o.literal) {
          w.write(it.tensor_index, 0, o.literal->data(), o.literal->size());
          if (options.progress) options.progress->bytes += o.literal->size();
        } else if (!o.is_expert) {
          const std::byte* src = o.source->data();
          std::uint64_t n = o.source->info->nbytes();
          std::uint64_t at = o.source->file->data_offset() + o.source->info->begin;
          if (o.decode_hook.empty() && o.encode_hook.empty() && !o.cast_from) {
            std::lock_guard<std::mutex> lock(file_lock[s]);
            w.copy_from_file(it.tensor_index, 0, o.source->file->file().fd(), at, n, src);
          } else {
            o.source->file->file().will_need(at, n);
            stage.resize(n);
            stage2.resize(n);
            const std::byte* cur = src;
            tensor_spec hook_spec = o.spec;  // hooks see the source's elements
            if (o.cast_from) hook_spec.type = *o.cast_from;
            if (!o.decode_hook.empty()) {
              options.hooks(o.decode_hook, 0, o.source->info->name, hook_spec, cur, stage.data());
              cur = stage.data();
            }
            if (!o.encode_hook.empty()) {
              std::byte* dst = cur == stage.data() ? stage2.data() : stage.data();
              options.hooks(o.encode_hook, 1, o.spec.name, hook_spec, cur, dst);
              cur = dst;
            }
            std::uint64_t out_n = n;
            if (o.cast_from) {
              cast_elements(*o.cast_from, cur, o.spec.type, widened, n / dtype_size(*o.cast_from), o.spec.name);
              cur = widened.data();
              out_n = widened.size();
            }
            std::lock_guard<std::mutex> lock(file_lock[s]);
            w.write(it.tensor_index, 0, cur, out_n);
          }
          o.source->file->file().dont_need(at, n);
          if (options.progress) options.progress->bytes += n;
        } else {
          const auto& pieces = o.slots[it.slot];
          std::size_t esize = dtype_size(o.spec.type);
          std::uint64_t slot_bytes = static_cast<std::uint64_t>(o.rows_total * o.cols) * esize;
          std::uint64_t base = it.slot * slot_bytes;
          bool direct = !o.transpose && !o.dequantize &&
                        std::all_of(pieces.begin(), pieces.end(), [](const matrix_view& v) { return v.contiguous(); });
          if (direct) {
            std::lock_guard<std::mutex> lock(file_lock[s]);
            std::uint64_t at = base;
            for (const auto& v : pieces) {
              w.copy_from_file(it.tensor_index, at, v.source->file->file().fd(), file_range(v).first, v.nbytes(), v.at(0, 0));
              at += v.nbytes();
            }
          } else {
            for (const auto& v : pieces) acquire(v);
            stage.resize(slot_bytes);
            std::int64_t row_off = 0;
            for (std::size_t k = 0; k < pieces.size(); ++k) {
              const matrix_view& v = pieces[k];
              if (o.dequantize) {
                const piece_scales& ps = o.slot_scales[it.slot][k];
                dq.out.resize(static_cast<std::size_t>(ps.grid.rows * ps.grid.cols));
                dequantize_view(v, ps, plan.source->quant, dq.out.data(), dq);
                place_bf16(dq.out.data(), ps.grid.rows, ps.grid.cols, reinterpret_cast<std::uint16_t*>(stage.data()), row_off,
                           o.rows_total, o.cols, o.transpose);
              } else if (o.transpose) {
                copy_matrix(v, stage.data() + static_cast<std::size_t>(row_off) * esize, 1, o.rows_total);
              } else {
                copy_matrix(v, stage.data() + static_cast<std::size_t>(row_off * o.cols) * esize, o.cols, 1);
              }
              row_off += v.rows;
            }
            std::lock_guard<std::mutex> lock(file_lock[s]);
            w.write(it.tensor_index, base, stage.data(), slot_bytes);
          }
          for (const auto& v : pieces) release(v);
          if (options.progress) options.progress->bytes += slot_bytes;
        }
        if (options.progress && (!o.is_expert || it.slot + 1 == o.slots.size())) options.progress->tensors++;
        if (--remaining[s] == 0) {
          writer.commit_shard(s);
          if (options.on_shard_done) {
            std::lock_guard<std::mutex> lock(done_mutex);
            options.on_shard_done(s);
          }
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
      failed = true;
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace moereg
