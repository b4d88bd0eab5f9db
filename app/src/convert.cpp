// SPDX-License-Identifier: Apache-2.0
#include "moereg/app/convert.h"

#include "convert_job.h"
#include "expert_parallel.h"
#include "guard.h"

namespace moereg::app {

result<convert_report> convert(const convert_request& request) noexcept {
  return guarded([&] {
    if (request.to.empty()) throw usage_error("convert: no target layout given (to)");
    if (request.expert_parallel > 0) return convert_expert_parallel(request);
    return run_conversion(request, {});
  });
}

}  // namespace moereg::app
