// SPDX-License-Identifier: Apache-2.0
#include "interruptible.h"

#include <chrono>
#include <future>

namespace moereg::python {

void interruptible::stop(py::error_already_set&& e) {
  stopped_ = true;
  reason_.emplace(std::move(e));
  cancel_ = true;
}

void interruptible::run_thread(const std::function<void()>& body) {
  std::future<void> done;
  {
    py::gil_scoped_release unlocked;
    done = std::async(std::launch::async, body);
  }
  for (;;) {
    bool finished = false;
    {
      py::gil_scoped_release unlocked;
      finished = done.wait_for(std::chrono::milliseconds(100)) == std::future_status::ready;
    }
    if (finished) break;
    if (!stopped_ && PyErr_CheckSignals() != 0) stop(py::error_already_set());
  }
  done.get();
}

void interruptible::raise(const app::problem& p) {
  if (!reason_) raise_problem(p);
  // The Python exception that stopped the job, with what the job kept.
  reason_->restore();
  reason_.reset();
  PyObject *type = nullptr, *value = nullptr, *trace = nullptr;
  PyErr_Fetch(&type, &value, &trace);
  PyErr_NormalizeException(&type, &value, &trace);
  py::handle exc(value);
  if (py::hasattr(exc, "add_note")) {
    try {
      exc.attr("add_note")("moereg: " + p.message);
    } catch (py::error_already_set&) {  // a note is a courtesy; the exception itself matters
    }
  }
  PyErr_Restore(type, value, trace);
  throw py::error_already_set();
}

}  // namespace moereg::python
