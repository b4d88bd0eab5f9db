// SPDX-License-Identifier: Apache-2.0
// cancel.h - stopping a long job cleanly on SIGINT, SIGTERM or SIGHUP.
//
// While a cancel_on_signals object lives, those three signals no longer kill the process:
// the handler only records which arrived. Every output write and commit checks
// (partial_file calls throw_if_cancelled), so the job unwinds at its next write by throwing
// `cancelled`, its temporary files are deleted on the way, and the command decides what
// to keep (convert keeps completed shards and the resume log) and says so. Without a live
// cancel_on_signals the signals act as usual.
#pragma once

#include <string>

#include "moereg/base/error.h"

namespace moereg {

// Thrown when the job was interrupted by a signal. The CLI exits 128 + signal (130 for ^C).
class cancelled : public error {
 public:
  explicit cancelled(int signo);
  // "interrupted by SIGTERM; <what_was_kept>": what the job kept or removed, for the user.
  cancelled(int signo, const std::string& what_was_kept);
  int signal_number() const { return signo_; }

 private:
  int signo_;
};

class cancel_on_signals {
 public:
  cancel_on_signals();   // installs the handlers (again, if nested)
  ~cancel_on_signals();  // restores the previous ones; a recorded signal stays recorded
  cancel_on_signals(const cancel_on_signals&) = delete;
  cancel_on_signals& operator=(const cancel_on_signals&) = delete;

 private:
  struct saved;
  saved* saved_;
};

// The signal received while handlers were installed, 0 if none.
int cancel_signal() noexcept;
// A caller's request (app::convert_request::cancel): every running job stops at its next write,
// with `cancelled` whose signal_number() is 0. It stays until clear_cancel_request(), which a
// job calls when it ends. One process-wide flag: it stops every job running in the process.
void request_cancel() noexcept;
void clear_cancel_request() noexcept;
// Throws `cancelled` if a signal was received or a cancel requested.
void throw_if_cancelled();
// "SIGINT", "SIGTERM", "SIGHUP", "a cancel request" for 0, else "a signal".
const char* signal_name(int signo) noexcept;

}  // namespace moereg
