// SPDX-License-Identifier: Apache-2.0
// convert_output.h - how convert and lora merge run a conversion job from the command line
// (^C, SIGTERM and SIGHUP stop it cleanly; a progress line on a terminal) and print its
// report: the plan of a dry run, or what was written, as text or --json.
#pragma once

#include <string>

#include "command.h"
#include "moereg/app/convert.h"
#include "moereg/app/lora.h"

namespace moereg::cli {

// What makes a conversion a LoRA merge (app::lora_merge_request).
struct lora_merge_options {
  std::string adapter, rounding, peft_version;
};

// The app's request for merging `lora` into job.source.
app::lora_merge_request merge_request(const app::convert_request& job, const lora_merge_options& lora);

// Runs `job` (through app::convert, or app::merge_lora when `lora` is set) and prints the
// report; returns the exit status. Failures are thrown as api_result.h does.
int run_and_print(app::convert_request job, const global_options& globals, const lora_merge_options* lora = nullptr);

// Prints a finished job's report: the plan of a dry run, or what was written.
void print_convert_report(const app::convert_report& report, const app::convert_request& job, const global_options& globals);

}  // namespace moereg::cli
