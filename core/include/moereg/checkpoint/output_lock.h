// SPDX-License-Identifier: Apache-2.0
// output_lock.h - exclusive ownership of an output directory for the whole of one job.
//
// Every writer of an output directory (convert, convert --resume, synth, ...) holds one of
// these from before it looks at the directory until it has finished or cleaned up, so two
// moereg processes never write into, or clean up, the same directory at once. The lock is
// flock(2) on OUT/.moereg-lock, a small file holding the owner's pid: the kernel drops the
// lock when its process dies however it dies, so a lock file left behind by a killed
// process blocks nobody (the next owner takes it over).
//
//   output_lock lock(out_dir);   // creates out_dir if missing; throws if another process owns it
//   ... check the directory, write files ...
//   lock.release(true);          // done: removes the lock file (and out_dir if it created
//                                // it and nothing else is left in it)
//
// A process refused the lock removes nothing: not the lock file, not the directory.
#pragma once

#include <string>
#include <vector>

namespace moereg {

class output_lock {
 public:
  static constexpr const char* file_name = ".moereg-lock";

  // Creates `dir` (and missing parents) if it does not exist, then takes the lock. Throws
  // moereg::error: "DIR is being written by another moereg process (pid N)" when another
  // process holds it; a clear message when DIR cannot be created or is not a directory.
  explicit output_lock(std::string dir);
  // A process joining a job whose coordinator holds the lock (a rank of an MPI conversion
  // writing its shards into the directory rank 0 locked): takes no lock, requires `dir` to
  // exist, and never removes it. The coordinator's lock keeps other jobs out for both.
  struct joined_t {};
  static constexpr joined_t joined{};
  output_lock(std::string dir, joined_t);
  output_lock(const output_lock&) = delete;
  output_lock& operator=(const output_lock&) = delete;
  ~output_lock();  // release(false)

  const std::string& dir() const { return dir_; }
  // Whether this lock created the directory (it did not exist before).
  bool created_dir() const { return created_dir_; }
  // Whether `dir` holds nothing but the lock file.
  bool dir_is_empty() const;

  // Whether the lock file at dir/.moereg-lock is still the one this lock holds: a user who
  // deletes a "stale" lock while the job runs lets a second process take a new one. (A
  // joined lock holds none: true.)
  bool held() const noexcept;

  // Removes the lock file and unlocks. With remove_empty_dir, also removes the directory if
  // this lock created it and it is empty now, and then the parents it made for it while they
  // are empty (never anything else). Idempotent, noexcept.
  // A lock no longer held() removes nothing: the file there is another process's.
  void release(bool remove_empty_dir) noexcept;

 private:
  std::string dir_;
  std::string path_;
  int fd_ = -1;
  bool created_dir_ = false;
  std::vector<std::string> created_parents_;  // made for dir_, deepest first
};

}  // namespace moereg
