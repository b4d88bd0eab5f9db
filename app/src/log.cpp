// SPDX-License-Identifier: Apache-2.0
#include "moereg/app/log.h"

#include "guard.h"
#include "moereg/base/log.h"

namespace moereg::app {

result<done> set_log_level(const std::string& level) noexcept {
  return guarded([&] {
    moereg::set_log_level(level);
    return done{};
  });
}

}  // namespace moereg::app
