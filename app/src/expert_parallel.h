// SPDX-License-Identifier: Apache-2.0
// expert_parallel.h - (in-tree) convert --ep N: one checkpoint per expert-parallel rank,
// OUT/ep-{r}-of-{N}/, rank r holding experts [r*E/N, (r+1)*E/N) of every MoE layer, numbered
// from 0, and every non-expert tensor (docs/mpi.md). A slice is an ordinary conversion with
// `--experts` set to its range, per-expert keys renumbered and config.json rewritten.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "moereg/app/convert.h"
#include "moereg/base/json.h"
#include "moereg/plan/decoded_checkpoint.h"

namespace moereg::app {

struct ep_slice {
  int rank = 0, ranks = 1;
};

// OUT/ep-{rank}-of-{ranks}
std::string ep_slice_dir(const std::string& out, const ep_slice& slice);

// The experts [first, last) of the slice; throws usage_error when E does not divide by the
// number of ranks (an uneven split would give ranks different shapes, which EP serving
// frameworks do not load).
std::pair<std::int64_t, std::int64_t> ep_expert_range(const model_dims& dims, const ep_slice& slice);

// The slice's config.json: the expert count field says the local count, and a `moereg`
// section says which global experts the slice holds:
//   "moereg": {"expert_parallel": {"rank": 1, "ranks": 4, "num_experts": 128, "top_k": 8, "first_expert": 32,
//              "experts": [32, ..., 63]}}
// (num_experts and top_k global; a slice of fewer experts than top_k says its count as top-k.)
json::value ep_slice_config(const json::value& config, const model_dims& dims, const ep_slice& slice);

// Refuses to cut experts out of a checkpoint that is itself a slice (its ids would need
// composing): before planning, so nothing is written. `option` names what asked.
void refuse_slicing_a_slice(const json::value& config, const std::string& option);

// moe run routes over every expert of the model: a slice (config.json's `moereg` section)
// holds the whole router but only some experts, so it is refused, naming the range it holds.
void refuse_running_a_slice(const json::value& config, const std::string& checkpoint);

// The same for any expert range [first, last) (convert --experts A:B, slice == nullptr): the
// section is "expert_slice", without rank and ranks. The plan has refused a source that is
// itself a slice (refuse_slicing_a_slice) before this is written.
json::value expert_range_config(const json::value& config, const model_dims& dims, std::int64_t first, std::int64_t last,
                                const ep_slice* slice);

// Checks OUT (new or empty; with --resume, anything); the slices' writers create it. Returns
// whether OUT is new (did not exist), i.e. whether a failed run may remove it when left empty.
bool prepare_ep_output(const convert_request& request);

// The slices s of request (expert_parallel = N) with s % ranks == rank, one after the other;
// with --resume a complete slice is kept and an interrupted one resumed. The report sums the
// slices'. OUT must be prepared.
convert_report convert_ep_slices(const convert_request& request, int rank, int ranks);

// prepare_ep_output and every slice, in this process; OUT is removed again if this made it
// and a failure left it empty.
convert_report convert_expert_parallel(const convert_request& request);

}  // namespace moereg::app
