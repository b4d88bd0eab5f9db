#include "moereg/checkpoint/resume_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>
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

std::uint64_t file_checksum(const std::string& path) {
  // pread into a small buffer, not mmap: a mapping would count the whole file in our
  // resident memory, and the file is usually still in the page cache anyway.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw error(path + ": cannot open for checksum: " + std::strerror(errno));
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  constexpr std::size_t chunk = 8 << 20;
  std::vector<std::uint64_t> buf(chunk / 8);
  // Four independent multiply-xor lanes over 8-byte words: memory speed, not cryptographic.
  std::uint64_t lanes[4] = {0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull, 0x27D4EB2F165667C5ull};
  std::uint64_t total = 0, h = 1469598103934665603ull;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      throw error(path + ": read error during checksum: " + std::strerror(e));
    }
    if (n == 0) break;
    std::size_t words = static_cast<std::size_t>(n) / 32 * 4, i = 0;
    for (; i < words; i += 4)
      for (int k = 0; k < 4; ++k) {
        lanes[k] = (lanes[k] ^ buf[i + static_cast<std::size_t>(k)]) * 0x100000001B3ull;
        lanes[k] ^= lanes[k] >> 29;
      }
    auto tail = reinterpret_cast<const unsigned char*>(buf.data());
    for (std::size_t b = i * 8; b < static_cast<std::size_t>(n); ++b) h = (h ^ tail[b]) * 1099511628211ull;
    total += static_cast<std::uint64_t>(n);
  }
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  h ^= total;
  for (auto l : lanes) h = (h ^ l) * 0x9E3779B97F4A7C15ull;
  return h ^ (h >> 31);
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
