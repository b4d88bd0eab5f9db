// SPDX-License-Identifier: Apache-2.0
#include "cpu_tile_weights.h"

#include <sys/mman.h>

#include <fstream>
#include <iterator>
#include <new>
#include <string>

namespace moereg::cpu {

namespace {
constexpr std::size_t huge_page = std::size_t{2} << 20;
}

tile_memory::tile_memory(std::size_t bytes) {
  if (bytes == 0) return;
  // Over-allocate by one huge page and trim, so the region starts on a 2 MiB boundary.
  const std::size_t want = (bytes + huge_page - 1) / huge_page * huge_page;
  void* raw = ::mmap(nullptr, want + huge_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  auto base = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t aligned = (base + huge_page - 1) / huge_page * huge_page;
  if (aligned > base) ::munmap(raw, aligned - base);
  const std::uintptr_t end = base + want + huge_page;
  if (end > aligned + want) ::munmap(reinterpret_cast<void*>(aligned + want), end - (aligned + want));
  p_ = reinterpret_cast<void*>(aligned);
  bytes_ = want;
  ::madvise(p_, bytes_, MADV_HUGEPAGE);  // advice only: without THP the pages are 4 KiB
}

std::size_t tile_memory::huge_page_bytes() const {
  if (!p_) return 0;
  std::ifstream in("/proc/self/smaps");
  if (!in) return 0;
  const std::string smaps{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const auto begin = reinterpret_cast<std::uintptr_t>(p_);
  return anon_huge_bytes(smaps, begin, begin + bytes_);
}

tile_memory::~tile_memory() {
  if (p_) ::munmap(p_, bytes_);
}

tile_memory& tile_memory::operator=(tile_memory&& o) noexcept {
  if (this != &o) {
    if (p_) ::munmap(p_, bytes_);
    p_ = o.p_, bytes_ = o.bytes_;
    o.p_ = nullptr, o.bytes_ = 0;
  }
  return *this;
}

}  // namespace moereg::cpu
