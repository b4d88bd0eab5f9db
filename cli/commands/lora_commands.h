// SPDX-License-Identifier: Apache-2.0
// lora_commands.h - the subcommands of `moereg lora` (one file each) and what they share.
#pragma once

#include <string>
#include <vector>

#include "command.h"
#include "moereg/app/lora.h"

namespace moereg::cli {

int run_lora_inspect(const std::vector<std::string>& args, global_options& globals);
int run_lora_convert(const std::vector<std::string>& args, global_options& globals);
int run_lora_merge(const std::vector<std::string>& args, global_options& globals);

// --adapter, --base, --peft-version and --plugin-path as the API's request.
app::lora_open_request lora_open_request_of(const po::variables_map& vm);

}  // namespace moereg::cli
