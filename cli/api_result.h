// SPDX-License-Identifier: Apache-2.0
// api_result.h - an application-layer result in the CLI: its value, or its problem thrown as
// the exception main() prints and maps to the exit status (usage 2, input 1, cancelled
// 128 + signal, internal 1 with "internal error").
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include "moereg/app/result.h"
#include "moereg/base/error.h"

namespace moereg::cli {

// A job stopped by a signal or a cancel request; `message` says what was kept.
struct stopped {
  int signal = 0;
  std::string message;
};

[[noreturn]] inline void throw_problem(const app::problem& p) {
  switch (p.kind) {
    case app::error_kind::usage: throw usage_error(p.message);
    case app::error_kind::input: throw error(p.message);
    case app::error_kind::cancelled: throw stopped{p.signal, p.message};
    case app::error_kind::internal: break;
  }
  throw std::runtime_error(p.message);
}

template <class T>
T take(app::result<T> r) {
  if (!r.ok()) throw_problem(r.error());
  return std::move(r).value();
}

}  // namespace moereg::cli
