// SPDX-License-Identifier: Apache-2.0
#include "cpu_tile_weights.h"

#include "moereg/base/meminfo.h"

#include <sys/mman.h>

#include <algorithm>
#include <charconv>
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

std::int64_t copy_budget(std::int64_t limit, std::string* source) {
  if (limit >= 0) {
    *source = "backend option copy_memory_limit";
    return limit;
  }
  *source = "the host's MemAvailable less an eighth";
  const auto available = moereg::memory_available();
  if (!available) return -1;
  const auto a = static_cast<std::int64_t>(*available);
  return a - a / 8;
}

std::size_t anon_huge_bytes(std::string_view smaps, std::uintptr_t begin, std::uintptr_t end) {
  std::size_t total = 0;
  std::uintptr_t lo = 0, hi = 0;  // the mapping whose fields follow
  while (!smaps.empty()) {
    const std::size_t eol = smaps.find('\n');
    const std::string_view line = smaps.substr(0, eol);
    smaps.remove_prefix(eol == std::string_view::npos ? smaps.size() : eol + 1);
    // A mapping's first line: "start-end perms offset dev inode path", addresses in hex.
    std::uintptr_t a = 0, b = 0;
    const char* const first = line.data();
    const char* const last = line.data() + line.size();
    auto [dash, e1] = std::from_chars(first, last, a, 16);
    if (e1 == std::errc{} && dash < last && *dash == '-') {
      auto [space, e2] = std::from_chars(dash + 1, last, b, 16);
      if (e2 == std::errc{} && space < last && *space == ' ') {
        lo = a, hi = b;
        continue;
      }
    }
    constexpr std::string_view field = "AnonHugePages:";
    if (line.substr(0, field.size()) != field) continue;
    std::size_t pos = field.size();
    while (pos < line.size() && line[pos] == ' ') ++pos;
    std::size_t kib = 0;
    if (std::from_chars(line.data() + pos, last, kib).ec != std::errc{}) continue;
    const std::uintptr_t from = std::max(lo, begin), to = std::min(hi, end);
    if (from < to) total += std::min<std::size_t>(kib * 1024, to - from);
  }
  return total;
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
