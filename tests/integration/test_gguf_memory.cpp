// SPDX-License-Identifier: Apache-2.0
// Metadata amplification: a valid 64 MiB GGUF of 8 UINT8 arrays of 8 Mi items each, read by
// `moereg inspect` in a child process. Decoded one value per item the header took 11.7 GB;
// kept encoded it costs about its bytes. The child runs under a 4 GiB address-space limit so
// a regression fails the test instead of exhausting the machine.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "test_support.h"

using namespace moereg::test;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_gguf_memory {
namespace {

struct child_result {
  int exit_code = -1;
  long max_rss_kib = 0;
};

child_result run_limited(const std::vector<std::string>& args, rlim_t address_space) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (address_space > 0) {
      rlimit lim{address_space, address_space};
      ::setrlimit(RLIMIT_AS, &lim);
    }
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  child_result r;
  int status = 0;
  rusage ru{};
  if (pid < 0 || ::wait4(pid, &status, 0, &ru) != pid) return r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.max_rss_kib = ru.ru_maxrss;
  return r;
}

template <class T>
void put(std::ofstream& out, T v) {
  out.write(reinterpret_cast<const char*>(&v), sizeof v);
}

}  // namespace

TEST(GgufMemory, InspectOfLargeMetadataArraysStaysNearTheFileSize) {
  temp_dir d;
  const std::string path = d / "arrays.gguf";
  {
    std::ofstream out(path, std::ios::binary);
    out.write("GGUF", 4);
    put<std::uint32_t>(out, 3);
    put<std::uint64_t>(out, 0);  // tensors
    put<std::uint64_t>(out, 8);  // keys
    std::string items(8u << 20, '\x5a');
    for (int k = 0; k < 8; ++k) {
      std::string key = "general.blob" + std::to_string(k);
      put<std::uint64_t>(out, key.size());
      out << key;
      put<std::uint32_t>(out, 9);  // ARRAY
      put<std::uint32_t>(out, 0);  // of UINT8
      put<std::uint64_t>(out, items.size());
      out << items;
    }
    std::uint64_t size = static_cast<std::uint64_t>(out.tellp());
    out << std::string((32 - size % 32) % 32, '\0');
    ASSERT_TRUE(out.good());
  }
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer reserves terabytes of shadow address space and adds its own resident
  // memory: no address-space limit, and a looser bound (still far below the 11.7 GB of old).
  constexpr rlim_t address_space = 0;
  constexpr long bound_mib = 1024;
#else
  constexpr rlim_t address_space = rlim_t{4} << 30;
  constexpr long bound_mib = 400;
#endif
  child_result r = run_limited({std::string(MOEREG_BUILD_DIR) + "/bin/moereg", "inspect", path}, address_space);
  EXPECT_EQ(r.exit_code, 0) << "inspect of a valid file with large arrays failed (killed for memory?)";
  // The mapped file (64 MiB, touched while validating), one encoded copy of the arrays
  // (64 MiB) and the process itself; decoded per item this was 11.7 GB.
  EXPECT_LT(r.max_rss_kib, bound_mib * 1024) << "max RSS " << r.max_rss_kib / 1024 << " MiB";
  std::printf("moereg inspect of a 64 MiB GGUF of 8 UINT8 arrays of 8 Mi items: max RSS %ld MiB\n", r.max_rss_kib / 1024);
}

}  // namespace test_gguf_memory
