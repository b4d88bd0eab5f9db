// SPDX-License-Identifier: Apache-2.0
// log.h - moereg's own messages (what a job is doing, warnings about kept or redone files)
// go to stderr through spdlog's default logger, at level "info" unless set here.
#pragma once

#include <string>

#include "moereg/app/export.h"
#include "moereg/app/result.h"

namespace moereg::app {

struct done {};

// "trace", "debug", "info", "warn", "error" or "off".
MOEREG_API result<done> set_log_level(const std::string& level) noexcept;

}  // namespace moereg::app
