// SPDX-License-Identifier: Apache-2.0
// mpi_partition.h - the collective steps of a shared conversion (app/src/job_partition.h)
// over MPI_COMM_WORLD.
#pragma once

#include <atomic>

#include "job_partition.h"

namespace moereg::cli {

struct mpi_partition_state {
  // Set once write_together has returned or thrown on every process together: from then on
  // a failure is this process's alone and needs no MPI_Abort to stop the others.
  std::atomic<bool> writes_settled{false};
  // Set when another process's write failed and this one was stopped for it.
  std::atomic<bool> stopped_for_peer{false};
};

// Requires MPI initialised with MPI_THREAD_MULTIPLE (the progress exchange runs on a thread).
app::job_partition make_mpi_partition(int rank, int ranks, mpi_partition_state& state);

}  // namespace moereg::cli
