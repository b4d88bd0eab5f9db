// SPDX-License-Identifier: Apache-2.0
// test_cpu_backend_util.h - the cpu backend library loaded from the build tree with dlopen,
// as any host would, behind a minimal host API of the test's own; and a loop over every
// kernel set this machine runs.
#pragma once

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

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

// The backend options (moereg_backend_option) that create_with_test_options passes, set and
// cleared by the tests around the cases they cover.
inline std::map<std::string, std::string>& test_options() {
  static std::map<std::string, std::string> options;
  return options;
}
inline void set_option(const char* key, const std::string& value) { test_options()[key] = value; }
inline void clear_option(const char* key) { test_options().erase(key); }

// create through the API 2 slot with the test's current options.
inline moereg_status* create_with_test_options(const moereg_moe_weights* w, const moereg_routing_params* r,
                                               const moereg_backend_options* o, moereg_backend** out) {
  std::vector<moereg_backend_option> kv;
  for (const auto& [k, v] : test_options()) kv.push_back({k.c_str(), v.c_str()});
  return cpu_api()->create_with_options(w, r, o, kv.data(), kv.size(), out);
}

// Runs `body` once per kernel set this CPU has (option isa, read at create; a set the
// CPU lacks falls back to the best one it has), and once with the portable model of the AMX
// matrix unit taking every expert with a token (so the engine's AMX path is checked on any
// CPU; the real unit runs under "" where the CPU has one, for experts with enough tokens).
template <class F>
void for_each_isa(F body) {
  for (const char* isa : {"", "avx512bf16", "avx512f", "avx2", "scalar", "amx_emulated"}) {
    SCOPED_TRACE(std::string("isa=") + isa);
    set_option("isa", isa);
    if (std::string(isa) == "amx_emulated") set_option("unit_min_rows", "1");
    body();
    clear_option("unit_min_rows");
  }
  clear_option("isa");
}

}  // namespace moereg::test
