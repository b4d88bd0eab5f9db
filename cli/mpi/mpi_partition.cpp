// SPDX-License-Identifier: Apache-2.0
#include "mpi_partition.h"

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <thread>

#include "moereg/base/cancel.h"
#include "moereg/base/error.h"

namespace moereg::cli {

namespace {

void agree(const std::string& fingerprint, int rank, int ranks) {
  // Fingerprints are 16 hex digits (convert_job.cpp); a fixed width keeps the exchange one call.
  constexpr int width = 16;
  std::string mine = fingerprint;
  mine.resize(width, ' ');
  std::string all(static_cast<std::size_t>(width * ranks), ' ');
  MPI_Allgather(mine.data(), width, MPI_CHAR, all.data(), width, MPI_CHAR, MPI_COMM_WORLD);
  for (int k = 1; k < ranks; ++k)
    if (all.compare(static_cast<std::size_t>(k * width), width, all, 0, width) != 0)
      throw error("rank " + std::to_string(k) + " planned another conversion than rank 0 (plan fingerprint " +
                  all.substr(static_cast<std::size_t>(k * width), width) + " against " + all.substr(0, width) + ", seen by rank " +
                  std::to_string(rank) + "): every process must see the same source files, plugins and options");
}

std::vector<bool> share(const std::vector<bool>& complete, int rank) {
  std::uint64_t n = complete.size();
  MPI_Bcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  std::vector<unsigned char> bits(n, 0);
  if (rank == 0)
    for (std::size_t i = 0; i < n; ++i) bits[i] = complete[i] ? 1 : 0;
  if (n) MPI_Bcast(bits.data(), static_cast<int>(n), MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD);
  return std::vector<bool>(bits.begin(), bits.end());
}

// Every process meets every 100 ms to sum progress and learn who is done or failed; the
// meetings end, on every process in the same round, when all are done. A failure anywhere
// cancels the writes everywhere (each keeps its complete shards), so a job never runs on
// after one process has given up.
void write_together(const std::function<void()>& write, const execute_progress& mine, execute_progress& whole, int ranks,
                    mpi_partition_state& state) {
  std::atomic<bool> done{false}, failed{false};
  std::thread beat([&] {
    for (;;) {
      std::uint64_t in[4] = {mine.bytes.load(), mine.tensors.load(), done.load() ? 1u : 0u, failed.load() ? 1u : 0u}, out[4];
      MPI_Allreduce(in, out, 4, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
      whole.bytes = out[0];
      whole.tensors = out[1];
      if (out[3] > 0 && !failed.load()) {
        state.stopped_for_peer = true;
        request_cancel();
      }
      if (out[2] == static_cast<std::uint64_t>(ranks)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  try {
    write();
  } catch (...) {
    if (!state.stopped_for_peer) failed = true;
    done = true;
    beat.join();
    state.writes_settled = true;
    throw;
  }
  done = true;
  beat.join();
  state.writes_settled = true;
  // This process's shards are complete, but the job is not: rank 0 must not finish the output.
  if (state.stopped_for_peer) throw error("another rank failed (its message is above); the shards this rank wrote are kept for --resume");
}

}  // namespace

app::job_partition make_mpi_partition(int rank, int ranks, mpi_partition_state& state) {
  app::job_partition p;
  p.rank = rank;
  p.ranks = ranks;
  p.agree_on_plan = [rank, ranks](const std::string& fp) { agree(fp, rank, ranks); };
  p.share_complete = [rank](const std::vector<bool>& complete) { return share(complete, rank); };
  p.write_together = [ranks, &state](const std::function<void()>& write, const execute_progress& mine, execute_progress& whole) {
    write_together(write, mine, whole, ranks, state);
  };
  return p;
}

}  // namespace moereg::cli
