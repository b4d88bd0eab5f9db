// SPDX-License-Identifier: Apache-2.0
// moe bench refuses a preset whose weight file would not fit where it goes, before writing:
// past the free space of the work directory's filesystem, or, on a tmpfs, past the memory
// available (a tmpfs that fills memory gets the bench killed and the file stays behind).
#include <gtest/gtest.h>

#include <sys/vfs.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "bench_support.h"
#include "moereg/base/error.h"
#include "test_support.h"

namespace moereg::app {
namespace {

std::string message_of(const std::string& dir, std::uint64_t bytes) {
  try {
    check_room(dir, bytes, "moe bench: shape big's weights");
  } catch (const moereg::error& e) {
    return e.what();
  }
  return "";
}

std::uint64_t mem_available() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::uint64_t kib = 0;
  while (meminfo >> key >> kib)
    if (key == "MemAvailable:") return kib * 1024;
    else meminfo.ignore(256, '\n');
  return 0;
}

TEST(BenchRoom, RefusesWhatTheFilesystemCannotHold) {
  test::temp_dir d;
  EXPECT_EQ(message_of(d.path(), 4096), "") << "4 KiB fit anywhere";
  const std::string m = message_of(d.path(), std::uint64_t{1} << 60);
  EXPECT_NE(m.find("moe bench: shape big's weights: "), std::string::npos) << m;
  EXPECT_NE(m.find(" to write in " + d.path() + ", whose filesystem has "), std::string::npos) << m;
  EXPECT_NE(m.find("pass --work-dir"), std::string::npos) << m;
}

// A tmpfs holds its files in memory: a file that fits the tmpfs and the memory available, but
// leaves under 2 GiB of memory beside it, is refused (on the development VM a 22.6 GB file was
// written into a 24 GB tmpfs on 23 GB of memory, and the bench was killed for memory). Checked
// where /dev/shm is a tmpfs.
TEST(BenchRoom, OnATmpfsCountsMemory) {
  struct statfs f {};
  if (::statfs("/dev/shm", &f) != 0 || f.f_type != 0x01021994) GTEST_SKIP() << "/dev/shm is not a tmpfs here";
  const std::uint64_t avail = mem_available();
  const std::uint64_t tmpfs_free = static_cast<std::uint64_t>(std::filesystem::space("/dev/shm").available);
  EXPECT_NE(message_of("/dev/shm", std::uint64_t{1} << 60), "") << "1 EiB fits nowhere";
  // Leaves 1 GiB of the memory available beside it, and fits the tmpfs.
  constexpr std::uint64_t gib = std::uint64_t{1} << 30;
  if (avail < 4 * gib || avail - gib > tmpfs_free) GTEST_SKIP() << "the tmpfs is smaller than the memory available";
  const std::uint64_t bytes = avail - gib;
  const std::string m = message_of("/dev/shm", bytes);
  EXPECT_NE(m.find("a tmpfs (its files live in memory)"), std::string::npos) << m;
  EXPECT_EQ(message_of("/dev/shm", 4096), "");
}

}  // namespace
}  // namespace moereg::app
