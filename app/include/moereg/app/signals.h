// SPDX-License-Identifier: Apache-2.0
// signals.h - letting SIGINT, SIGTERM and SIGHUP stop a job cleanly, as the command line does.
//
// The library installs no signal handlers of its own: without this guard a ^C kills the
// program mid-write, leaving a `.partial` shard and the output's lock file behind (a later
// `resume = true` still finishes the job, but the process is gone). While a stop_on_signals
// object lives, the three signals only record which arrived; every running job stops at its
// next write, keeps what a resume needs (convert: its completed shards and the resume log;
// synth: nothing), and returns a `cancelled` problem whose `signal` holds the number (SIGINT =
// 2). The previous handlers come back when the guard is destroyed; a signal that arrived
// while it lived stays recorded, so jobs started afterwards stop at once: a program that goes
// on working after a signal makes a new process, as the command line does (it exits 128 +
// signal). Guards nest. Install one around the jobs, in the thread that starts them:
//
//   moereg::app::stop_on_signals guard;
//   auto r = moereg::app::convert(request);     // ^C: r.error().kind == cancelled, .signal == 2
#pragma once

#include <memory>

#include "moereg/app/export.h"

namespace moereg::app {

class MOEREG_API stop_on_signals {
 public:
  stop_on_signals();   // installs the handlers
  ~stop_on_signals();  // restores the previous ones
  stop_on_signals(const stop_on_signals&) = delete;
  stop_on_signals& operator=(const stop_on_signals&) = delete;

  // The signal received while a guard lived (SIGINT = 2), 0 if none.
  static int received() noexcept;

 private:
  struct handlers;
  std::unique_ptr<handlers> handlers_;
};

}  // namespace moereg::app
