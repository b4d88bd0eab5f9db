// SPDX-License-Identifier: Apache-2.0
#include "moereg/base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "moereg/base/error.h"

namespace moereg {

void set_log_level(const std::string& level) {
  static bool configured = [] {
    auto logger = spdlog::stderr_color_mt("moereg");
    logger->set_pattern("%^[%l]%$ %v");
    spdlog::set_default_logger(logger);
    return true;
  }();
  (void)configured;
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    throw usage_error("--log-level: unknown level '" + level + "', expected trace, debug, info, warn, error or off");
  spdlog::set_level(lvl);
}

}  // namespace moereg
