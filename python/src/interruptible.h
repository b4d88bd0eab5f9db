// SPDX-License-Identifier: Apache-2.0
// interruptible.h - running a long job (a conversion, a LoRA merge) so that Python stays in
// charge: ^C stops it, a progress callback runs with the GIL, and an exception the callback
// raises stops the job too.
//
// Python runs signal handlers only in the main thread, and only when that thread runs
// bytecode; a job holding the calling thread for minutes would ignore ^C. So the job runs on
// a thread of its own while the calling thread waits without the GIL, taking it every 100 ms
// to let Python check for signals. Either event sets the job's cancel flag; the job stops at
// its next write and keeps what it can resume (convert.h), and that Python exception is
// raised, with moereg's account of what was kept added as a note.
#pragma once

#include <atomic>
#include <functional>
#include <optional>

#include "bindings.h"

namespace moereg::python {

class interruptible {
 public:
  // The flag to hand the job (convert_request::cancel).
  const std::atomic<bool>* cancel_flag() const { return &cancel_; }

  // Wraps a Python callable (or None) for a job's progress callback: called from the job's
  // threads, it takes the GIL; if it raises, the job is cancelled and the exception kept.
  template <class Progress>
  std::function<void(const Progress&)> progress(py::object callback) {
    if (callback.is_none()) return {};
    return [this, callback](const Progress& p) {
      py::gil_scoped_acquire gil;
      if (stopped_) return;
      try {
        callback(p);
      } catch (py::error_already_set& e) {
        stop(std::move(e));
      }
    };
  }

  // Runs job() (which must not touch Python) on its own thread, as described above. Call
  // with the GIL held; returns with it held.
  template <class T>
  app::result<T> run(std::function<app::result<T>()> job) {
    std::optional<app::result<T>> out;
    run_thread([&] { out.emplace(job()); });
    return std::move(*out);
  }

  // Raises the problem; if the job stopped because of a Python exception (^C, a failing
  // callback), that exception instead, noted with moereg's message.
  [[noreturn]] void raise(const app::problem& p);

  // The value; or the problem raised as above. A Python exception that came after the job
  // had done its work (in the final progress call) is raised as well: it is the caller's.
  template <class T>
  T unwrap(app::result<T>&& r) {
    if (!r.ok()) raise(r.error());
    if (reason_) raise(app::problem{app::error_kind::cancelled, "the job had completed when the exception came"});
    return std::move(r).value();
  }

 private:
  void run_thread(const std::function<void()>& body);
  void stop(py::error_already_set&& e);

  std::atomic<bool> cancel_{false};
  bool stopped_ = false;  // guarded by the GIL
  std::optional<py::error_already_set> reason_;
};

}  // namespace moereg::python
