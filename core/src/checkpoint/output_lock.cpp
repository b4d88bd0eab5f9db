// SPDX-License-Identifier: Apache-2.0
#include "moereg/checkpoint/output_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <vector>
#include <thread>

#include "moereg/base/error.h"

namespace fs = std::filesystem;

namespace moereg {

namespace {

// The owner writes its pid just after taking the lock; a reader may come in between.
std::string owner_pid(int fd) {
  for (int tries = 0; tries < 50; ++tries) {
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) {
      std::string s(buf, static_cast<std::size_t>(n));
      while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
      if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) return s;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return "unknown";
}

}  // namespace

output_lock::output_lock(std::string dir) : dir_(std::move(dir)), path_((fs::path(dir_) / file_name).string()) {
  // Another process may create or remove the directory, or finish and remove its lock file,
  // between any two of these steps; each such race sends us round again.
  for (int attempt = 0;; ++attempt) {
    if (attempt == 100)
      throw error(dir_ + ": cannot lock the output directory: it keeps being created and removed by another process");
    struct stat st {};
    if (::stat(dir_.c_str(), &st) != 0) {
      if (errno != ENOENT) throw error(dir_ + ": cannot use as output directory: " + std::strerror(errno));
      fs::path parent = fs::path(dir_).parent_path();
      std::error_code ec;
      if (!parent.empty()) {
        // The parents this makes are removed with OUT when a failed job leaves them empty.
        std::vector<std::string> missing;
        for (fs::path a = parent; !a.empty() && !fs::exists(a, ec); a = a.parent_path()) missing.push_back(a.string());
        fs::create_directories(parent, ec);  // mkdir below reports what went wrong
        if (!ec) created_parents_.insert(created_parents_.end(), missing.begin(), missing.end());
      }
      if (::mkdir(dir_.c_str(), 0755) == 0) {
        created_dir_ = true;
      } else if (errno != EEXIST) {
        throw error(dir_ + ": cannot create output directory: " + std::strerror(errno));
      } else if (struct stat lst {}; ::lstat(dir_.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
        throw error(dir_ + ": is a symbolic link to " + fs::read_symlink(dir_, ec).string() +
                    ", which does not exist; create that directory first, or give another output directory");
      }
      continue;
    }
    if (!S_ISDIR(st.st_mode)) throw error(dir_ + ": exists and is not a directory");
    int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
      if (errno == ENOENT) continue;  // the directory went away
      throw error(path_ + ": cannot create the lock file: " + std::strerror(errno));
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int e = errno;
      if (e == EWOULDBLOCK) {
        std::string pid = owner_pid(fd);
        ::close(fd);
        // flock is per open file: another job of this very process is refused here too.
        throw error(dir_ + " is being written by " +
                    (pid == std::to_string(::getpid()) ? std::string("another job of this process (pid ") + pid + ")"
                                                       : "another moereg process (pid " + pid + ")"));
      }
      ::close(fd);
      throw error(path_ + ": cannot lock: " + std::strerror(e));
    }
    // The previous owner removes its lock file before unlocking: if it did so between our
    // open and our flock, we hold a lock on a file nobody else can open. Start again.
    struct stat held {}, named {};
    if (::fstat(fd, &held) != 0 || ::stat(path_.c_str(), &named) != 0 || held.st_ino != named.st_ino ||
        held.st_dev != named.st_dev) {
      ::close(fd);
      continue;
    }
    std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
      int e = errno;
      ::unlink(path_.c_str());
      ::close(fd);
      throw error(path_ + ": cannot write the lock file: " + std::strerror(e));
    }
    fd_ = fd;
    return;
  }
}

output_lock::output_lock(std::string dir, joined_t) : dir_(std::move(dir)), path_((fs::path(dir_) / file_name).string()) {
  struct stat st {};
  if (::stat(dir_.c_str(), &st) != 0)
    throw error(dir_ + ": the output directory the job's coordinator made is not visible here: " + std::strerror(errno) +
                " (every process must see OUT on a shared filesystem)");
  if (!S_ISDIR(st.st_mode)) throw error(dir_ + ": exists and is not a directory");
}

output_lock::~output_lock() { release(true); }

bool output_lock::dir_is_empty() const {
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename() != file_name) return false;
  if (ec) throw error(dir_ + ": cannot list: " + ec.message());
  return true;
}

bool output_lock::held() const noexcept {
  if (fd_ < 0) return true;
  struct stat mine {}, there {};
  if (::fstat(fd_, &mine) != 0) return true;  // cannot tell: assume ours
  return ::stat(path_.c_str(), &there) == 0 && there.st_dev == mine.st_dev && there.st_ino == mine.st_ino;
}

void output_lock::release(bool remove_empty_dir) noexcept {
  if (fd_ < 0) return;
  if (held()) {
    // Unlink while still locked: whoever opened the file meanwhile sees it is gone (above).
    ::unlink(path_.c_str());
    if (remove_empty_dir && created_dir_ && ::rmdir(dir_.c_str()) == 0)  // fails, harmlessly, unless empty
      for (const auto& p : created_parents_)  // deepest first
        if (::rmdir(p.c_str()) != 0) break;
  }
  ::close(fd_);
  fd_ = -1;
}

}  // namespace moereg
