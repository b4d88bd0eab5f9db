// SPDX-License-Identifier: Apache-2.0
#include "moereg/base/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include "moereg/base/error.h"
#include "moereg/base/printable.h"

namespace moereg {

namespace {

// %* in the pattern: the message with control characters and invalid UTF-8 escaped, so a
// tensor name or metadata string a caller logs unescaped still cannot drive the terminal.
class printable_payload : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string text = printable_message(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<printable_payload>(); }
};

}  // namespace

void set_log_level(const std::string& level) {
  static bool configured = [] {
    auto logger = spdlog::stderr_color_mt("moereg");
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<printable_payload>('*').set_pattern("%^[%l]%$ %*");
    logger->set_formatter(std::move(formatter));
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
