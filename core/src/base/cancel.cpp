// SPDX-License-Identifier: Apache-2.0
#include "moereg/base/cancel.h"

#include <atomic>
#include <csignal>
#include <string>

namespace moereg {

namespace {

// Lock-free, so safe in a handler; read by every writing thread.
std::atomic<int> received{0};
static_assert(std::atomic<int>::is_always_lock_free);
std::atomic<bool> requested{false};

void on_signal(int signo) {
  // Only the first signal counts; a second ^C while the job cleans up changes nothing.
  int none = 0;
  received.compare_exchange_strong(none, signo);
}

constexpr int signals[] = {SIGINT, SIGTERM, SIGHUP};

}  // namespace

const char* signal_name(int signo) noexcept {
  switch (signo) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case 0: return "a cancel request";
    default: return "a signal";
  }
}

cancelled::cancelled(int signo)
    : error(std::string("interrupted by ") + signal_name(signo)), signo_(signo) {}

cancelled::cancelled(int signo, const std::string& what_was_kept)
    : error(std::string("interrupted by ") + signal_name(signo) + "; " + what_was_kept), signo_(signo) {}

struct cancel_on_signals::saved {
  struct sigaction old[3];
};

cancel_on_signals::cancel_on_signals() : saved_(new saved{}) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // writes in progress finish; the job stops at its next check
  for (int i = 0; i < 3; ++i) sigaction(signals[i], &sa, &saved_->old[i]);
}

cancel_on_signals::~cancel_on_signals() {
  for (int i = 0; i < 3; ++i) sigaction(signals[i], &saved_->old[i], nullptr);
  delete saved_;
}

int cancel_signal() noexcept { return received.load(std::memory_order_relaxed); }

void request_cancel() noexcept { requested.store(true, std::memory_order_relaxed); }
void clear_cancel_request() noexcept { requested.store(false, std::memory_order_relaxed); }

void throw_if_cancelled() {
  if (int s = received.load(std::memory_order_relaxed)) throw cancelled(s);
  if (requested.load(std::memory_order_relaxed)) throw cancelled(0);
}

}  // namespace moereg
