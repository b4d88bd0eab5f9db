// SPDX-License-Identifier: Apache-2.0
// error.h - the exceptions moereg's C++ code throws, and what exit status each maps to.
//
// One class per kind of failure a user can act on. Messages name the file, the key (or
// line) and what was expected; they are printed as-is by the CLI, so write them whole.
#pragma once

#include <stdexcept>
#include <string>

namespace moereg {

// Bad input or a failed check: a corrupt file, a missing tensor, a plugin refused.
// The CLI exits 1.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The command line itself is wrong (unknown option, missing argument). The CLI exits 2.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace moereg
