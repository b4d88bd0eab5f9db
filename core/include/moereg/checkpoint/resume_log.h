// SPDX-License-Identifier: Apache-2.0
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

// A fast 64-bit checksum of a whole file, read in 64 MiB blocks by `threads` threads
// (0 = all cores); cheap when the file is still in the page cache, as it is after writing.
std::uint64_t file_checksum(const std::string& path, int threads = 0);

// 64-bit hash of a string (FNV-1a), for plan fingerprints.
std::uint64_t string_hash(const std::string& s);

}  // namespace moereg
