// SPDX-License-Identifier: Apache-2.0
#include "moereg/app/convert.h"

#include "convert_job.h"
#include "guard.h"

namespace moereg::app {

result<convert_report> convert(const convert_request& request) noexcept {
  return guarded([&] { return run_conversion(request, {}); });
}

}  // namespace moereg::app
