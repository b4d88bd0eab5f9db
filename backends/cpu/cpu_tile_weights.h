// SPDX-License-Identifier: Apache-2.0
// cpu_tile_weights.h - an optional copy of the bf16 experts in the matrix unit's own tile
// order, made once at create: for each 16-row tile of a weight matrix, its K steps of
// 16 x 32 bf16 follow one another as contiguous KiB tiles (zeros past the last row and past
// K). A K pass then reads one sequential stream per tile instead of 16 rows 2*K bytes apart,
// which in place (row strides of whole 4 KiB pages) land in one L1 set and defeat the
// hardware prefetchers. It costs a second copy of the weights in memory and one pass over
// them at create; the vector tiles (T = 1, FP8) keep reading the originals.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <string_view>
#include <vector>

namespace moereg::cpu {

// Anonymous memory, 2 MiB-aligned and advised for transparent huge pages (a tile stream
// then crosses one TLB entry per 2 MiB instead of per 4 KiB). Move-only.
class tile_memory {
 public:
  tile_memory() = default;
  explicit tile_memory(std::size_t bytes);  // throws std::bad_alloc
  ~tile_memory();
  tile_memory(tile_memory&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr, o.bytes_ = 0; }
  tile_memory& operator=(tile_memory&& o) noexcept;
  tile_memory(const tile_memory&) = delete;
  tile_memory& operator=(const tile_memory&) = delete;

  std::uint16_t* data() const { return static_cast<std::uint16_t*>(p_); }
  std::size_t bytes() const { return bytes_; }
  // How much of it the kernel backs with transparent huge pages now (/proc/self/smaps, see
  // anon_huge_bytes); 0 where that file cannot be read. The advice is not a promise: with THP
  // in `madvise` mode a fragmented host hands out 4 KiB pages, one TLB entry per 4 KiB of tiles.
  std::size_t huge_page_bytes() const;

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

// Of the addresses [begin, end), the bytes that a /proc/<pid>/smaps text reports backed by
// transparent huge pages: each mapping that overlaps the range adds its AnonHugePages, at most
// its overlap with the range (a mapping merged with a neighbour reports their sum).
std::size_t anon_huge_bytes(std::string_view smaps, std::uintptr_t begin, std::uintptr_t end);

// How much memory a copy of the experts made at create (tile-ordered, quantized) may take:
// `limit` (>= 0, backend option copy_memory_limit) or, by default, MemAvailable less an eighth
// (headroom for the rest of the process and the host); `source` says which. The copies are
// anonymous memory that the kernel overcommits, so one larger than memory would not fail where
// it is made: the process would be killed while it is written. -1: no bound known.
std::int64_t copy_budget(std::int64_t limit, std::string* source);

// Scratch that tiles are loaded from or stored to (repacked activations, accumulators,
// panels): each tile row is 64 bytes, and a row that straddles two cache lines costs two
// loads. std::vector's memory is only 16-byte aligned (a large one mmapped at page + 16);
// bench/cpu/amx_bench.cpp on the development VM, the engine's block shape from L1: 2.6-2.8
// TFLOP/s per core from 64-byte-aligned tiles, 0.85-0.88 from the same tiles 16 bytes off.
template <class T>
struct line_allocator {
  using value_type = T;
  line_allocator() = default;
  template <class U>
  line_allocator(const line_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const line_allocator<U>&) const noexcept { return true; }
};
template <class T>
using line_vector = std::vector<T, line_allocator<T>>;

// Where tile (n / 16, k / 32) of a matrix packed with `k_steps` steps per tile row starts.
inline const std::uint16_t* tile_at(const std::uint16_t* packed, std::int64_t k_steps, std::int64_t n, std::int64_t k) {
  return packed + ((n / 16) * k_steps + k / 32) * 512;
}

}  // namespace moereg::cpu
