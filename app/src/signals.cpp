// SPDX-License-Identifier: Apache-2.0
// signals.cpp - the API's face of base/cancel.h's handlers.
#include "moereg/app/signals.h"

#include "moereg/base/cancel.h"

namespace moereg::app {

struct stop_on_signals::handlers {
  cancel_on_signals installed;
};

stop_on_signals::stop_on_signals() : handlers_(std::make_unique<handlers>()) {}
stop_on_signals::~stop_on_signals() = default;

int stop_on_signals::received() noexcept { return cancel_signal(); }

}  // namespace moereg::app
