// SPDX-License-Identifier: Apache-2.0
// convert_recipe.h - `moereg convert --config recipe.yaml`: a recipe's keys as option values.
#pragma once

#include <map>
#include <string>

namespace moereg::cli {

// A recipe's keys fill the options the command line left unset; `where` gets "path:line: key"
// for each, for messages about its value. Unknown keys, non-scalar values and YAML 1.1
// booleans are refused naming the line.
void apply_recipe(const std::string& path, std::map<std::string, std::string>& opts, std::map<std::string, std::string>& where);

}  // namespace moereg::cli
