// SPDX-License-Identifier: Apache-2.0
// result.h - what every moereg::app function returns: a value, or a problem.
//
// No exception leaves the API: a failure comes back as a `problem` with a kind a program can
// act on and the message moereg's command line would print (it names the file, the key or
// line, and what was expected). `value()` on a result that holds a problem throws
// std::logic_error: check `ok()` first.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <variant>

namespace moereg::app {

enum class error_kind {
  usage,      // the request itself is wrong: a missing field, a value out of range (the CLI exits 2)
  input,      // bad input or a failed check: a damaged file, an unknown family, a refused plugin (exit 1)
  cancelled,  // stopped by a signal or the request's cancel flag; what was kept is in the message
  internal,   // a bug in moereg: please report it with the message
};

// "usage", "input", "cancelled", "internal".
inline const char* to_string(error_kind k) {
  switch (k) {
    case error_kind::usage: return "usage";
    case error_kind::input: return "input";
    case error_kind::cancelled: return "cancelled";
    case error_kind::internal: return "internal";
  }
  return "internal";
}

struct problem {
  error_kind kind = error_kind::internal;
  std::string message;
  int signal = 0;  // cancelled by a signal: its number (SIGINT = 2); 0 otherwise
};

template <class T>
class result {
 public:
  result(T value) : v_(std::in_place_index<0>, std::move(value)) {}       // NOLINT: implicit by design
  result(problem failure) : v_(std::in_place_index<1>, std::move(failure)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  const T& value() const& { return std::get<0>(check()); }
  T& value() & { return std::get<0>(check()); }
  T&& value() && { return std::get<0>(std::move(check())); }
  // The problem; only when !ok().
  const problem& error() const { return std::get<1>(v_); }

 private:
  const std::variant<T, problem>& check() const {
    if (!ok()) throw std::logic_error("moereg::app::result::value() on a failure: " + error().message);
    return v_;
  }
  std::variant<T, problem>& check() {
    if (!ok()) throw std::logic_error("moereg::app::result::value() on a failure: " + error().message);
    return v_;
  }
  std::variant<T, problem> v_;
};

}  // namespace moereg::app
