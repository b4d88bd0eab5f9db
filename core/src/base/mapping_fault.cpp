// SPDX-License-Identifier: Apache-2.0
#include "moereg/base/mapping_fault.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <mutex>
#include <string>

#include "moereg/base/error.h"

namespace moereg {

namespace {

// A fixed table the signal handler can read without locks. A checkpoint has at most a few
// hundred files; a mapping that finds no free slot is simply not guarded.
struct slot {
  std::atomic<std::uintptr_t> begin{0};
  std::atomic<std::uintptr_t> end{0};
  std::atomic<int> fd{-1};
};
constexpr std::size_t max_slots = 4096;
slot slots[max_slots];

std::atomic<int> armed{0};
std::atomic<int> fault_fd{-1};
std::atomic<std::uint64_t> fault_mapped_size{0};
std::uintptr_t page_size = 4096;
struct sigaction previous {};
std::once_flag installed;

void on_sigbus(int signo, siginfo_t* info, void* context) {
  auto a = reinterpret_cast<std::uintptr_t>(info->si_addr);
  if (armed.load() > 0 && info->si_code > 0) {
    for (auto& s : slots) {
      std::uintptr_t b = s.begin.load();
      if (b && a >= b && a < s.end.load()) {
        int expected = -1;
        fault_fd.compare_exchange_strong(expected, s.fd.load());
        if (expected == -1) fault_mapped_size = s.end.load() - b;
        void* page = reinterpret_cast<void*>(a & ~(page_size - 1));
        if (::mmap(page, page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) return;
        break;
      }
    }
  }
  // Not ours: whoever handled SIGBUS before (a sanitizer), else the default action.
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction) return previous.sa_sigaction(signo, info, context);
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    return previous.sa_handler(signo);
  }
  ::signal(SIGBUS, SIG_DFL);
  if (info->si_code <= 0) ::raise(SIGBUS);  // sent by kill(): no instruction to run again
}

std::string path_of(int fd) {
  char buf[4096];
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "an input file (descriptor " + std::to_string(fd) + ")";
}

[[noreturn]] void shrunk(int fd, std::uint64_t mapped) {
  struct stat st {};
  std::string now = ::fstat(fd, &st) == 0 ? std::to_string(st.st_size) + " bytes" : "unreadable";
  throw error(path_of(fd) + ": the file shrank while it was being read (" + std::to_string(mapped) + " bytes when opened, " +
              now + " now): another program truncated or rewrote it during the job");
}

}  // namespace

mapping_fault_guard::mapping_fault_guard() {
  std::call_once(installed, [] {
    page_size = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    ::sigaction(SIGBUS, &sa, &previous);
  });
  if (armed++ == 0) fault_fd = -1;  // a new job: forget the last one's fault
}

mapping_fault_guard::~mapping_fault_guard() { --armed; }

void register_mapping(const void* begin, std::uint64_t size, int fd) noexcept {
  auto b = reinterpret_cast<std::uintptr_t>(begin);
  for (auto& s : slots) {
    std::uintptr_t expected = 0;
    // Fill end and fd before begin is published: the handler reads begin first.
    if (s.begin.load() == 0 && s.end.load() == 0) {
      std::uintptr_t zero = 0;
      if (!s.end.compare_exchange_strong(zero, b + size)) continue;
      s.fd = fd;
      s.begin.compare_exchange_strong(expected, b);
      return;
    }
  }
}

void unregister_mapping(const void* begin) noexcept {
  auto b = reinterpret_cast<std::uintptr_t>(begin);
  for (auto& s : slots)
    if (s.begin.load() == b) {
      s.begin = 0;
      s.fd = -1;
      s.end = 0;
      return;
    }
}

void throw_if_mapping_fault() {
  int fd = fault_fd.load();
  if (fd >= 0) shrunk(fd, fault_mapped_size.load());
}

void throw_if_any_mapping_shrunk() {
  throw_if_mapping_fault();
  for (auto& s : slots) {
    std::uintptr_t b = s.begin.load();
    if (!b) continue;
    int fd = s.fd.load();
    std::uint64_t mapped = s.end.load() - b;
    struct stat st {};
    if (fd >= 0 && ::fstat(fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) < mapped) shrunk(fd, mapped);
  }
}

void throw_if_shrunk(const void* p) {
  throw_if_mapping_fault();
  auto a = reinterpret_cast<std::uintptr_t>(p);
  for (auto& s : slots) {
    std::uintptr_t b = s.begin.load();
    if (b && a >= b && a < s.end.load()) {
      int fd = s.fd.load();
      std::uint64_t mapped = s.end.load() - b;
      struct stat st {};
      if (fd >= 0 && ::fstat(fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) < mapped) shrunk(fd, mapped);
      return;
    }
  }
}

}  // namespace moereg
