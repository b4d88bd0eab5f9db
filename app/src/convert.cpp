// SPDX-License-Identifier: Apache-2.0
#include "moereg/app/convert.h"

#include "convert_job.h"
#include "guard.h"

namespace moereg::app {

result<convert_report> convert(const convert_request& request) noexcept {
  return guarded([&] {
    if (request.to.empty()) throw usage_error("convert: no target layout given (to)");
    return run_conversion(request, {});
  });
}

}  // namespace moereg::app
