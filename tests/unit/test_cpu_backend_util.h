// SPDX-License-Identifier: Apache-2.0
// test_cpu_backend_util.h - the cpu backend library loaded from the build tree with dlopen,
// as any host would, behind a minimal host API of the test's own; and a loop over every
// kernel set this machine runs.
#pragma once

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "moereg/abi/moereg_backend.h"

namespace moereg::test {

// The test's own status type; the host API below is all the backend sees of it.
struct test_status {
  int32_t code;
  std::string message;
};

inline moereg_status* make_test_status(int32_t code, const char* message) noexcept {
  return reinterpret_cast<moereg_status*>(new test_status{code, message});
}
inline void discard_log_line(int32_t, const char*) noexcept {}
inline const moereg_host_api test_host_api = {MOEREG_PLUGIN_API_VERSION, &make_test_status, &discard_log_line};

// Takes ownership of a status; returns "" for success, else "<code>: <message>".
inline std::string take(moereg_status* s) {
  if (!s) return "";
  auto* t = reinterpret_cast<test_status*>(s);
  std::string r = std::to_string(t->code) + ": " + t->message;
  delete t;
  return r;
}

inline const moereg_backend_api* cpu_api() {
  static const moereg_backend_api* api = [] {
    std::string path = std::string(MOEREG_BUILD_DIR) + "/lib/moereg/backends/libmoereg_backend_cpu.so";
    void* lib = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);  // kept for the life of the process
    if (!lib) {
      ADD_FAILURE() << "dlopen " << path << ": " << ::dlerror();
      return static_cast<const moereg_backend_api*>(nullptr);
    }
    auto entry = reinterpret_cast<moereg_backend_entry_fn>(::dlsym(lib, MOEREG_BACKEND_ENTRY_SYMBOL));
    if (!entry) {
      ADD_FAILURE() << path << ": no symbol " << MOEREG_BACKEND_ENTRY_SYMBOL;
      return static_cast<const moereg_backend_api*>(nullptr);
    }
    return entry(&test_host_api);
  }();
  return api;
}

inline std::string describe(moereg_backend* b) {
  std::string s;
  moereg_sink sink{&s, [](void* c, const char* d, size_t n) { static_cast<std::string*>(c)->append(d, n); }};
  EXPECT_EQ(take(cpu_api()->describe(b, sink)), "");
  return s;
}

// Runs `body` once per kernel set this CPU has (MOEREG_CPU_ISA is read at create; a set the
// CPU lacks falls back to the best one it has), and once with the portable model of the AMX
// matrix unit taking every expert with a token (so the engine's AMX path is checked on any
// CPU; the real unit runs under "" where the CPU has one, for experts with enough tokens).
template <class F>
void for_each_isa(F body) {
  for (const char* isa : {"", "avx512bf16", "avx512f", "avx2", "scalar", "amx_emulated"}) {
    SCOPED_TRACE(std::string("MOEREG_CPU_ISA=") + isa);
    ::setenv("MOEREG_CPU_ISA", isa, 1);
    if (std::string(isa) == "amx_emulated") ::setenv("MOEREG_CPU_UNIT_ROWS", "1", 1);
    body();
    ::unsetenv("MOEREG_CPU_UNIT_ROWS");
  }
  ::unsetenv("MOEREG_CPU_ISA");
}

}  // namespace moereg::test
