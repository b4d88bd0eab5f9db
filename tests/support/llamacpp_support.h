// SPDX-License-Identifier: Apache-2.0
// llamacpp_support.h - where the tests find real llama.cpp (scripts/fetch-llamacpp.sh, the
// pinned npm package) and its harness (tests/llamacpp/llamacpp_run.cpp), and the skip when
// the package is absent.
#pragma once

#include <filesystem>
#include <string>

namespace moereg::test {

#ifdef MOEREG_LLAMACPP_RUN
inline constexpr const char* llamacpp_run = MOEREG_LLAMACPP_RUN;
inline constexpr const char* llamacpp_lib = MOEREG_LLAMACPP_DIR "/lib";
#else
inline constexpr const char* llamacpp_run = "";
inline constexpr const char* llamacpp_lib = "";
#endif

// A path quoted for the shell commands the tests run.
inline std::string quoted(const std::string& s) { return "'" + s + "'"; }

}  // namespace moereg::test

#define SKIP_WITHOUT_LLAMACPP()                                                                                        \
  if (std::string(::moereg::test::llamacpp_run).empty() || !std::filesystem::exists(::moereg::test::llamacpp_lib))   \
  GTEST_SKIP() << "llama.cpp package absent (run scripts/fetch-llamacpp.sh, then re-run cmake)"
