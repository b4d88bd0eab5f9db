// SPDX-License-Identifier: Apache-2.0
// resume_log.h - what `convert --resume` trusts: a hidden file in the output directory
// recording, for the plan being executed, each shard completed so far with its size and a
// checksum taken when it was written. A shard is kept on resume only if all three agree.
// The log is written when the job starts (before any shard), so any interrupted job can be
// resumed, and it records the identity of every source file: a resume from sources that
// changed meanwhile is refused, naming the file.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace moereg {

struct resume_log {
  static constexpr const char* file_name = ".moereg-resume.json";
  std::string fingerprint;  // identifies the plan: same source, target and shard layout
  // The options behind the plan, as the user gave them ("to": "grouped", "--dtype": "bf16"),
  // so that a resume with other options can say which differ (absent from older logs).
  std::map<std::string, std::string> options;
  struct shard {
    std::uint64_t size = 0;
    std::uint64_t checksum = 0;
  };
  std::map<std::string, shard> shards;
  // What a source file looked like: size, modification time in ns, hash of its first bytes,
  // and its change time and inode: a file edited in place and its mtime set back (`cp -p`,
  // `rsync -t`, `touch -r`) keeps size, mtime and header, but the kernel moves its ctime, and a
  // replaced file has another inode. (0: not recorded, by a log of an older moereg.)
  struct source {
    std::uint64_t size = 0;
    std::int64_t mtime_ns = 0;
    std::uint64_t header_hash = 0;
    std::int64_t ctime_ns = 0;
    std::uint64_t inode = 0;
    std::uint64_t header_bytes = 0;  // what identify() was asked to hash (not saved: this run's)
  };
  std::map<std::string, source> sources;  // by path

  // Identify a source file; header_bytes: how much of its start to hash (its header:
  // tensor names, shapes and offsets; capped at 64 MiB).
  static source identify(const std::string& path, std::uint64_t header_bytes);
  // Throws moereg::error naming the first source of `now` that this log does not record
  // as it is now (changed size, time or header; or not a source of the logged job).
  void check_sources(const resume_log& now) const;
  // Why `now` differs from `was` ("" when it does not).
  static std::string difference(const source& was, const source& now);
  // Throws moereg::error naming the first source that is no longer as this log records it:
  // called by a job after its last read of the sources and before its output is complete, so
  // a source written during the job (config.json edited, a shard rewritten in place) fails
  // the job instead of completing an output that mixes old and new data.
  void check_unchanged() const;

  static std::optional<resume_log> load(const std::string& dir, const std::string& name = file_name);
  void save(const std::string& dir, const std::string& name = file_name) const;  // atomically

  // A job shared by several processes (an MPI conversion) has one log per process: rank 0's
  // under file_name (sources and all), and rank r's shards under part_file_name(r), each
  // written only by its process. --resume merges every part log of the same fingerprint, so
  // a job can resume with another number of processes.
  static std::string part_file_name(int rank);  // ".moereg-resume-part-3.json"
  static bool is_part_file_name(const std::string& name);
};

// A fast 64-bit checksum of a whole file, read in 64 MiB blocks by `threads` threads
// (0 = all cores); cheap when the file is still in the page cache, as it is after writing.
std::uint64_t file_checksum(const std::string& path, int threads = 0);

// 64-bit hash of a string (FNV-1a), for plan fingerprints.
std::uint64_t string_hash(const std::string& s);

}  // namespace moereg
