// SPDX-License-Identifier: Apache-2.0
// plugins_commands.h - the subcommands of `moereg plugins` (one file each). The work is
// moereg/app/plugins.h; these print its results.
#pragma once

#include <string>

#include "moereg/app/plugins.h"

namespace moereg::cli {

int plugins_list(const app::plugins_request& request, bool as_json);
int plugins_show(const app::plugins_request& request, const std::string& name, bool as_json);
int plugins_check(const app::plugins_request& request, const std::string& dir, bool as_json);

}  // namespace moereg::cli
