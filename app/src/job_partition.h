// SPDX-License-Identifier: Apache-2.0
// job_partition.h - (in-tree) one process's share of a conversion that several processes run
// together (the MPI front end, cli/mpi/). The job stays MPI-free: these collective steps are
// the only points where the processes meet, and the front end implements them. Every process
// makes the same plan from the same files (planning reads headers only), so nothing but a
// fingerprint, the list of complete shards and byte counts crosses between them.
//
// Sequence, on every process: plan -> agree_on_plan -> (rank 0: lock OUT, check kept shards,
// save the resume log) -> share_complete -> (rank > 0: join OUT) -> write_together (each its
// own shards) -> rank 0 writes configuration and index.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "moereg/checkpoint/checkpoint_writer.h"
#include "moereg/exec/executor.h"

namespace moereg::app {

struct job_partition {
  int rank = 0, ranks = 1;
  // Collective, once each process has planned: throws unless every fingerprint is the same.
  std::function<void(const std::string& fingerprint)> agree_on_plan;
  // Collective: rank 0 passes the shards it found complete (kept by --resume; all false for a
  // new job) once it has locked and checked OUT; every process returns rank 0's list.
  std::function<std::vector<bool>(const std::vector<bool>& complete)> share_complete;
  // Collective: runs `write` (this process's shards) while summing every process's `mine`
  // into `whole` (rank 0 reports `whole` as the job's progress); returns on every process once
  // every process's `write` has returned. When `write` fails on any process, every other
  // process's write is cancelled (it keeps its complete shards); then each process throws:
  // the failing one its own exception, the others an error saying another rank failed.
  std::function<void(const std::function<void()>& write, const execute_progress& mine, execute_progress& whole)> write_together;
};

// Which process writes each shard (the owner's rank; -1 for a shard already complete):
// balanced by bytes, the largest shard first, each to the process with the fewest bytes so far
// (ties to the lower rank), so every process computes the same answer. A one-file output goes
// to rank 0, which renames it into place when the job is complete.
std::vector<int> assign_shards(const std::vector<shard_plan>& shards, const std::vector<bool>& complete, int ranks);

}  // namespace moereg::app
