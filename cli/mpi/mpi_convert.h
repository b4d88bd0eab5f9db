// SPDX-License-Identifier: Apache-2.0
// mpi_convert.h - `mpirun -np N moereg convert ...`: one conversion shared by N processes
// (docs/mpi.md). Compiled only with MOEREG_MPI; the rest of moereg knows no MPI.
#pragma once

#include "command.h"
#include "convert_output.h"
#include "moereg/app/convert.h"

namespace moereg::cli {

// Runs `job` as this process's share of the MPI job it was started in and prints the report
// on rank 0; returns the exit status. A failure on any rank stops every rank: in the write
// phase cleanly (each keeps what --resume needs), before it through MPI_Abort.
// With `lora`, the job is `lora merge` of that adapter into job.source.
int run_mpi_convert(app::convert_request job, const global_options& globals, const lora_merge_options* lora = nullptr);

}  // namespace moereg::cli
