// resume_log.h - what `convert --resume` trusts: a hidden file in the output directory
// recording, for the plan being executed, each shard completed so far with its size and a
// checksum taken when it was written. A shard is kept on resume only if all three agree.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace moereg {

struct resume_log {
  static constexpr const char* file_name = ".moereg-resume.json";
  std::string fingerprint;  // identifies the plan: same source, target and shard layout
  struct shard {
    std::uint64_t size = 0;
    std::uint64_t checksum = 0;
  };
  std::map<std::string, shard> shards;

  static std::optional<resume_log> load(const std::string& dir);
  void save(const std::string& dir) const;  // atomically
};

// A fast 64-bit checksum of a whole file (reads it; cheap when it is in the page cache).
std::uint64_t file_checksum(const std::string& path);

// 64-bit hash of a string (FNV-1a), for plan fingerprints.
std::uint64_t string_hash(const std::string& s);

}  // namespace moereg
