// SPDX-License-Identifier: Apache-2.0
#include "moereg/checkpoint/resume_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>
#include <algorithm>

#include <sys/stat.h>
#include <filesystem>

#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/base/parallel.h"
#include "moereg/base/printable.h"
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
  ordered_run run;
  run.items = blocks;
  run.threads = resolve_threads(threads);
  std::vector<std::vector<std::byte>> bufs(std::min<std::size_t>(run.threads, std::max<std::size_t>(blocks, 1)));
  try {
    run_ordered(run, [&](std::size_t b, unsigned worker) {
      std::vector<std::byte>& buf = bufs[worker];
      buf.resize(block);
      std::uint64_t off = b * block, len = std::min(block, size - off), got = 0;
      while (got < len) {
        ssize_t n = ::pread(fd, buf.data() + got, len - got, static_cast<off_t>(off + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw error(path + ": read error during checksum at byte " + std::to_string(off + got) + ": " + std::strerror(errno));
        if (n == 0) throw error(path + ": shrank to " + std::to_string(off + got) + " bytes while being checksummed");
        got += static_cast<std::uint64_t>(n);
      }
      hashes[b] = hash_block(buf.data(), len, b);
    });
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  std::uint64_t h = size;
  for (auto x : hashes) h = (h ^ x) * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  return h ^ (h >> 29);
}

resume_log::source resume_log::identify(const std::string& path, std::uint64_t header_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw error(path + ": cannot stat: " + std::strerror(e));
  }
  source s;
  s.size = static_cast<std::uint64_t>(st.st_size);
  s.header_bytes = header_bytes;
  s.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  s.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec;
  s.inode = static_cast<std::uint64_t>(st.st_ino);
  std::vector<std::byte> buf(static_cast<std::size_t>(std::min({header_bytes, s.size, std::uint64_t{64} << 20})));
  std::size_t got = 0;
  while (got < buf.size()) {
    ssize_t n = ::pread(fd, buf.data() + got, buf.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  s.header_hash = hash_block(buf.data(), got, got);
  return s;
}

std::string resume_log::difference(const source& was, const source& now) {
  if (was.size != now.size)
    return "its size changed from " + std::to_string(was.size) + " to " + std::to_string(now.size) + " bytes";
  if (was.mtime_ns != now.mtime_ns) return "it was modified";
  if (was.header_hash != now.header_hash) return "its header changed";
  if (was.inode != 0 && was.inode != now.inode) return "it was replaced by another file of the same name";
  if (was.ctime_ns != 0 && was.ctime_ns != now.ctime_ns)
    return "it was written to or its attributes changed (its change time moved, though its modification time did not)";
  return {};
}

void resume_log::check_sources(const resume_log& now) const {
  for (const auto& [path, s] : now.sources) {
    auto it = sources.find(path);
    const std::string why = it == sources.end() ? "it was not a source of the interrupted conversion" : difference(it->second, s);
    if (!why.empty())
      throw error(path + ": the source changed since the interrupted conversion (" + why +
                  "), so the shards written from it cannot be trusted; convert into a new directory");
  }
}

void resume_log::check_unchanged() const {
  for (const auto& [path, was] : sources) {
    std::string why;
    try {
      why = difference(was, identify(path, was.header_bytes));
    } catch (const error& e) {
      why = std::string("it can no longer be read: ") + e.what();
    }
    if (!why.empty())
      throw error(path + ": the source changed while this job read it (" + why +
                  "); the output would mix old and new data, so it was not completed: run the job again once the source "
                  "no longer changes");
  }
}

std::string resume_log::part_file_name(int rank) { return ".moereg-resume-part-" + std::to_string(rank) + ".json"; }

bool resume_log::is_part_file_name(const std::string& name) {
  static const std::string prefix = ".moereg-resume-part-", suffix = ".json";
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return false;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  return digits.find_first_not_of("0123456789") == std::string::npos;
}

std::optional<resume_log> resume_log::load(const std::string& dir, const std::string& log_name) {
  fs::path p = fs::path(dir) / log_name;
  if (!fs::exists(p)) return std::nullopt;
  json::value v = json::parse_file(p.string());
  resume_log log;
  const json::value* fp = v.find("fingerprint");
  const json::value* sh = v.find("shards");
  if (!fp || !fp->is_string() || !sh || !sh->is_object()) throw error(p.string() + ": not a moereg resume log");
  log.fingerprint = fp->as_string();
  if (const json::value* o = v.find("options"); o && o->is_object())
    for (const auto& [k, x] : o->as_object())
      if (x.is_string()) log.options[k] = x.as_string();
  for (const auto& [name, s] : sh->as_object()) {
    const json::value* size = s.find("size");
    const json::value* sum = s.find("checksum");
    if (!size || !sum || !size->is_integer() || !sum->is_string() || size->as_int() < 0)
      throw error(p.string() + ": shard " + quote(name) + ": expected {\"size\": bytes, \"checksum\": \"16 hex digits\"}");
    const std::string& hex = sum->as_string();
    std::uint64_t checksum = 0;
    auto r = std::from_chars(hex.data(), hex.data() + hex.size(), checksum, 16);
    if (hex.size() != 16 || r.ec != std::errc() || r.ptr != hex.data() + hex.size())
      throw error(p.string() + ": shard " + quote(name) + ": checksum " + quote(hex) +
                  " is not 16 hex digits; the resume log is damaged: convert again into an empty directory");
    log.shards[name] = {static_cast<std::uint64_t>(size->as_int()), checksum};
  }
  if (const json::value* src = v.find("sources"); src && src->is_object())
    for (const auto& [path, e] : src->as_object()) {
      const json::value* size = e.find("size");
      const json::value* mtime = e.find("mtime_ns");
      const json::value* hash = e.find("header_hash");
      if (!size || !mtime || !hash || !size->is_integer() || !mtime->is_integer() || !hash->is_string())
        throw error(p.string() + ": bad source entry for " + path);
      resume_log::source& s = log.sources[path];
      s = {static_cast<std::uint64_t>(size->as_int()), static_cast<std::int64_t>(mtime->as_int()),
           std::stoull(hash->as_string(), nullptr, 16)};
      // Absent from logs written before session 26: not compared then.
      if (const json::value* c = e.find("ctime_ns"); c && c->is_integer()) s.ctime_ns = c->as_int();
      if (const json::value* i = e.find("inode"); i && i->is_integer()) s.inode = static_cast<std::uint64_t>(i->as_int());
    }
  return log;
}

void resume_log::save(const std::string& dir, const std::string& log_name) const {
  json::object sh;
  for (const auto& [name, s] : shards) {
    char hex[32];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(s.checksum));
    sh.emplace_back(name, json::value(json::object{{"size", json::value(s.size)}, {"checksum", json::value(std::string(hex))}}));
  }
  json::object src;
  for (const auto& [path, e] : sources) {
    char hex[32];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(e.header_hash));
    src.emplace_back(path, json::value(json::object{{"size", json::value(e.size)},
                                                     {"mtime_ns", json::value(e.mtime_ns)},
                                                     {"ctime_ns", json::value(e.ctime_ns)},
                                                     {"inode", json::value(static_cast<std::int64_t>(e.inode))},
                                                     {"header_hash", json::value(std::string(hex))}}));
  }
  json::object opts;
  for (const auto& [k, x] : options) opts.emplace_back(k, json::value(x));
  json::value v(json::object{{"fingerprint", json::value(fingerprint)},
                             {"options", json::value(std::move(opts))},
                             {"sources", json::value(std::move(src))},
                             {"shards", json::value(std::move(sh))}});
  write_file_atomic((fs::path(dir) / log_name).string(), json::dump(v, 2) + "\n");
}

}  // namespace moereg
