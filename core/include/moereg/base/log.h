// SPDX-License-Identifier: Apache-2.0
// log.h - moereg's logger (spdlog, to stderr) and its level, shared by the CLI and plugins.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace moereg {

// "trace".."error", "off". Throws moereg::usage_error for anything else.
void set_log_level(const std::string& level);

}  // namespace moereg
