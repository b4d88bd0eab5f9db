// SPDX-License-Identifier: Apache-2.0
// convert_job.h - the convert command's job (plan, shard, resume, write, finish atomically),
// shared by `moereg convert` and `moereg lora merge`, which is a conversion whose plan
// carries edits (lora/lora_merge.h).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "command.h"
#include "model_session.h"
#include "moereg/plan/conversion_plan.h"

namespace moereg::cli {

// Edits a conversion plan after it is made; returns text that joins the --resume fingerprint
// (so a resumed run with other edits is refused).
using plan_editor = std::function<std::string(model_session& session, conversion_plan& plan)>;

// Runs a conversion described by convert's option keys (source, output, to, from, family,
// shard_size, threads, experts, dtype, dry_run); vm supplies the plugin options and --resume.
int run_convert_job(std::map<std::string, std::string> options, const po::variables_map& vm, global_options& globals,
                    const plan_editor& edit);

}  // namespace moereg::cli
