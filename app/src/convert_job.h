// SPDX-License-Identifier: Apache-2.0
// convert_job.h - (in-tree) the conversion job behind app::convert and app::merge_lora:
// open, plan, shard, resume, write, finish atomically. Throws moereg::error, usage_error or
// cancelled; the public functions turn those into results (guard.h).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "moereg/app/convert.h"
#include "moereg/app/lora.h"
#include "moereg/checkpoint/resume_log.h"
#include "moereg/plan/conversion_plan.h"
#include "session.h"

namespace moereg::app {

// What an edit of the plan adds to the job's resume log: the files it reads (the adapter's
// config and weights), identified like the checkpoint's own so that a resume after one changed
// is refused, and its options by name ("--rounding": "peft"), so that a resume with others
// says which differ.
struct plan_edit_record {
  std::vector<std::string> sources;
  std::map<std::string, std::string> options;
};

// Edits a conversion plan after it is made (a LoRA merge attaches its adapter); returns text
// that joins the resume fingerprint, so a resumed run with other edits is refused.
using plan_editor = std::function<std::string(model_session& session, conversion_plan& plan, plan_edit_record& record)>;

struct ep_slice;
struct job_partition;

// request.to empty: the source's own layout. slice: write one expert-parallel slice into
// request.output (expert_parallel.h); request.expert_parallel is then ignored. part: this
// process's share of a job several processes run together (job_partition.h); only its rank 0
// writes the configuration and the index, and fills the report's totals.
// Records the identity of every file of `ckpt` (its shards and config.json) in log.sources.
void identify_sources(const checkpoint& ckpt, resume_log& log);

// An --ep job's record in OUT (expert_parallel.cpp): its options and sources.
inline constexpr const char* ep_record_name = ".moereg-ep.json";

convert_report run_conversion(const convert_request& request, const plan_editor& edit, const ep_slice* slice = nullptr,
                              const job_partition* part = nullptr);

// app::merge_lora as this process's share `part` of a merge several processes run together
// (nullptr: the whole merge); throws as run_conversion does.
convert_report run_lora_merge(const lora_merge_request& request, const job_partition* part);

}  // namespace moereg::app
