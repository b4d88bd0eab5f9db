// SPDX-License-Identifier: Apache-2.0
// moe_bench_output.h - what `moereg moe bench` prints: the report as JSON, or as a table.
#pragma once

#include "moe_presets.h"
#include "moereg/app/bench.h"

namespace moereg::cli {

void print_json(const app::moe_bench_report& rep, const moe_preset& pr);
// reference: whether the PyTorch columns were asked for.
void print_table(const app::moe_bench_report& rep, const moe_preset& pr, bool reference);

}  // namespace moereg::cli
