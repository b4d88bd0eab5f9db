// SPDX-License-Identifier: Apache-2.0
#include "moereg/checkpoint/resume_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>
#include <algorithm>
#include <atomic>
#include <thread>

#include <sys/stat.h>
#include <filesystem>

#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint_writer.h"

namespace fs = std::filesystem;

namespace moereg {

std::uint64_t string_hash(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

namespace {

// Four independent multiply-xor lanes over 8-byte words: memory speed, not cryptographic.
std::uint64_t hash_block(const std::byte* p, std::size_t n, std::uint64_t seed) {
  std::uint64_t lanes[4] = {0x9E3779B97F4A7C15ull ^ seed, 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull, 0x27D4EB2F165667C5ull};
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k) {
      std::uint64_t w;
      std::memcpy(&w, p + i + 8 * static_cast<std::size_t>(k), 8);
      lanes[k] = (lanes[k] ^ w) * 0x100000001B3ull;
      lanes[k] ^= lanes[k] >> 29;
    }
  std::uint64_t h = 1469598103934665603ull ^ n;
  for (; i < n; ++i) h = (h ^ static_cast<std::uint8_t>(p[i])) * 1099511628211ull;
  for (auto l : lanes) h = (h ^ l) * 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 31);
}

}  // namespace

std::uint64_t file_checksum(const std::string& path, int threads) {
  // pread into small buffers, not mmap: a mapping would count the whole file in our resident
  // memory. Fixed 4 MiB blocks hashed in parallel, combined in order: every thread holds one
  // block, so resident memory stays threads x 4 MiB.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw error(path + ": cannot open for checksum: " + std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
  constexpr std::uint64_t block = 4ull << 20;
  const std::size_t blocks = static_cast<std::size_t>((size + block - 1) / block);
  std::vector<std::uint64_t> hashes(blocks);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  auto worker = [&] {
    std::vector<std::byte> buf(block);
    for (std::size_t b; !failed && (b = next++) < blocks;) {
      std::uint64_t off = b * block, len = std::min(block, size - off), got = 0;
      while (got < len) {
        ssize_t n = ::pread(fd, buf.data() + got, len - got, static_cast<off_t>(off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          failed = true;
          break;
        }
        got += static_cast<std::uint64_t>(n);
      }
      hashes[b] = hash_block(buf.data(), len, b);
    }
  };
  unsigned n = threads > 0 ? static_cast<unsigned>(threads) : std::max(1u, std::thread::hardware_concurrency());
  n = static_cast<unsigned>(std::min<std::size_t>(n, std::max<std::size_t>(blocks, 1)));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < n; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  ::close(fd);
  if (failed) throw error(path + ": read error during checksum");
  std::uint64_t h = size;
  for (auto x : hashes) h = (h ^ x) * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  return h ^ (h >> 29);
}

std::optional<resume_log> resume_log::load(const std::string& dir) {
  fs::path p = fs::path(dir) / file_name;
  if (!fs::exists(p)) return std::nullopt;
  json::value v = json::parse_file(p.string());
  resume_log log;
  const json::value* fp = v.find("fingerprint");
  const json::value* sh = v.find("shards");
  if (!fp || !fp->is_string() || !sh || !sh->is_object()) throw error(p.string() + ": not a moereg resume log");
  log.fingerprint = fp->as_string();
  for (const auto& [name, s] : sh->as_object()) {
    const json::value* size = s.find("size");
    const json::value* sum = s.find("checksum");
    if (!size || !sum || !size->is_integer() || !sum->is_string()) throw error(p.string() + ": bad entry for " + name);
    log.shards[name] = {static_cast<std::uint64_t>(size->as_int()), std::stoull(sum->as_string(), nullptr, 16)};
  }
  return log;
}

void resume_log::save(const std::string& dir) const {
  json::object sh;
  for (const auto& [name, s] : shards) {
    char hex[32];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(s.checksum));
    sh.emplace_back(name, json::value(json::object{{"size", json::value(s.size)}, {"checksum", json::value(std::string(hex))}}));
  }
  json::value v(json::object{{"fingerprint", json::value(fingerprint)}, {"shards", json::value(std::move(sh))}});
  write_file_atomic((fs::path(dir) / file_name).string(), json::dump(v, 2) + "\n");
}

}  // namespace moereg
