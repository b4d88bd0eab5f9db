// SPDX-License-Identifier: Apache-2.0
#include "mpi/mpi_convert.h"

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <vector>

#include "api_result.h"
#include "convert_job.h"
#include "convert_output.h"
#include "error_line.h"
#include "expert_parallel.h"
#include "launch_check.h"
#include "moereg/base/cancel.h"
#include "moereg/base/error.h"
#include "moereg/base/log.h"
#include "moereg/base/printable.h"
#include "moereg/checkpoint/resume_log.h"
#include "mpi/mpi_partition.h"
#include "progress.h"

namespace moereg::cli {

namespace {

// The exception in flight, printed as main() prints it, with the rank; returns the exit status.
int report_failure(const std::string& who, const mpi_partition_state& state) {
  try {
    throw;
  } catch (const usage_error& e) {
    print_error_line("moereg: " + who + ": " + printable_message(e.what()));
    return 2;
  } catch (const cancelled& e) {
    if (state.stopped_for_peer) {
      print_error_line("moereg: " + who + ": stopped because another rank failed; " + printable_message(e.what()));
      return 1;
    }
    print_error_line("moereg: " + who + ": " + printable_message(e.what()));
    return e.signal_number() > 0 ? 128 + e.signal_number() : 1;
  } catch (const error& e) {
    print_error_line("moereg: error: " + who + ": " + printable_message(e.what()));
    return 1;
  } catch (const std::exception& e) {
    print_error_line("moereg: internal error: " + who + ": " + printable_message(e.what()));
    return 1;
  }
}

// Rank 0's reports of the whole job: the progress line on a terminal; otherwise (mpirun's
// output is a pipe) a log line every 5 seconds.
std::function<void(const app::convert_progress&)> job_progress(const std::string& whose) {
  if (stderr_is_tty()) {
    auto line = std::make_shared<progress_line>("convert");
    return [line](const app::convert_progress& p) { (*line)(p); };
  }
  auto last = std::make_shared<double>(0);
  return [last, whose](const app::convert_progress& p) {
    if (!p.final && p.seconds - *last < 5) return;
    *last = p.seconds;
    const double pct = p.total_bytes ? 100.0 * static_cast<double>(p.bytes) / static_cast<double>(p.total_bytes) : 100.0;
    spdlog::info("{}: {:.0f}% written ({} of {} tensors)", whose, pct, p.tensors, p.total_tensors);
  };
}

// Sums the slices' reports on rank 0 (each rank wrote its own slices).
app::convert_report sum_on_rank0(app::convert_report r) {
  std::uint64_t in[4] = {r.tensors, r.total_bytes, r.shards, r.resumed_shards}, out[4] = {0, 0, 0, 0};
  MPI_Reduce(in, out, 4, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
  double t = r.write_seconds, tmax = 0;
  MPI_Reduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  r.tensors = out[0];
  r.total_bytes = out[1];
  r.shards = out[2];
  r.resumed_shards = out[3];
  r.write_seconds = tmax;
  return r;
}

// This rank's --ep slices, written while every rank's progress is summed (rank 0 reports the
// whole job) and a failure on any rank stops the others, as a shared conversion does. Slices
// of an even split are the same size, so the job's total is one slice's times N.
app::convert_report convert_ep_slices_together(app::convert_request job, int rank, int ranks, mpi_partition_state& state) {
  app::job_partition part = make_mpi_partition(rank, ranks, state);
  execute_progress mine, whole;
  std::atomic<std::uint64_t> done_bytes{0}, done_tensors{0}, slice_bytes{0}, slice_tensors{0};
  auto report = rank == 0 ? job_progress("all ranks") : nullptr;
  const std::uint64_t n = static_cast<std::uint64_t>(job.expert_parallel);
  auto whole_progress = [&](double seconds, bool final) {
    app::convert_progress w;
    w.bytes = whole.bytes.load();
    w.tensors = whole.tensors.load();
    w.total_bytes = slice_bytes.load() * n;
    w.total_tensors = slice_tensors.load() * n;
    w.seconds = seconds;
    w.final = final;
    return w;
  };
  job.on_progress = [&](const app::convert_progress& p) {
    slice_bytes = p.total_bytes;
    slice_tensors = p.total_tensors;
    mine.bytes = done_bytes.load() + p.bytes;
    mine.tensors = done_tensors.load() + p.tensors;
    if (p.final) {
      done_bytes += p.total_bytes;
      done_tensors += p.total_tensors;
    }
    if (report && !p.final) report(whole_progress(p.seconds, false));
  };
  app::convert_report r;
  const auto t0 = std::chrono::steady_clock::now();
  part.write_together([&] { r = app::convert_ep_slices(job, rank, ranks); }, mine, whole);
  if (report) report(whole_progress(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), true));
  return r;
}

// Every rank runs one job. A rank started with other options (an MPMD launch, `A : B`) or
// seeing another checkpoint at the same path made a mixed set of --ep slices with exit 0, and a
// rank with --ep beside one without waited for ever in a collective step the other never
// reached. Each rank hashes its options (and, for --ep, whose slices share no plan check, the
// plan of the source as it sees it: names, dtypes, shapes, origins); the hashes are compared
// before anything is written. Every rank reaches the same verdict, so all stop together.
void require_one_job(const app::convert_request& job, const lora_merge_options* lora, int ranks, mpi_partition_state& state) {
  std::string text = std::string(job.dry_run ? "dry-run" : "write") + "|to " + job.to + "|from " + job.from + "|family " +
                     job.family + "|ep " + std::to_string(job.expert_parallel) + "|experts " +
                     (job.experts ? std::to_string(job.experts->first) + ":" + std::to_string(job.experts->second) : "all") +
                     "|dtype " + (job.to_bf16 ? "bf16" : job.to_f32 ? "f32" : "stored") + "|shards " +
                     (job.shard_size ? std::to_string(*job.shard_size) : "default") + (job.resume ? "|resume" : "") +
                     (lora ? "|lora " + lora->adapter + " " + lora->rounding + " " + lora->peft_version : "");
  if (job.expert_parallel > 0 && !job.dry_run) {
    app::convert_request dry = job;
    dry.dry_run = true;
    dry.resume = false;
    dry.on_progress = nullptr;
    dry.expert_parallel = 0;  // the whole model's plan: the same source seen the same way
    for (const auto& t : take(app::convert(dry)).plan) {
      text += "|" + t.name + " " + t.dtype + " " + t.origin;
      for (std::int64_t d : t.shape) text += "," + std::to_string(d);
    }
  }
  std::uint64_t mine = string_hash(text);
  std::vector<std::uint64_t> all(static_cast<std::size_t>(ranks));
  MPI_Allgather(&mine, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
  for (int r = 1; r < ranks; ++r)
    if (all[static_cast<std::size_t>(r)] != all[0]) {
      state.writes_settled = true;  // every rank throws here: none waits for another
      throw usage_error("rank " + std::to_string(r) + " was given another job than rank 0 (other options, or another checkpoint at " +
                        job.source + " where it runs): every rank must run the same command on the same files; nothing was written");
    }
}

}  // namespace

int run_mpi_convert(app::convert_request job, const global_options& globals, const lora_merge_options* lora) {
  // srun without --mpi=pmix or pmi2 gives its tasks no PMI: Open MPI would abort in MPI_Init
  // with a page about it, or each task would run alone. Said plainly before MPI starts.
  if (const auto launch = detect_parallel_launch(); launch && launch->variable.rfind("SLURM_STEP_NUM_TASKS=", 0) == 0 &&
                                                    !std::getenv("PMIX_RANK") && !std::getenv("PMI_RANK")) {
    print_error_line("moereg: started as one of " + std::to_string(launch->size) + " processes (" + launch->variable +
                     ") by srun with no PMI for MPI to join them through: run srun --mpi=pmix (docs/mpi.md); "
                     "nothing was written");
    return 2;
  }
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const std::string who = "rank " + std::to_string(rank) + " of " + std::to_string(ranks);
  // One copy of the plan's log lines is enough; --log-level debug shows every rank's.
  if (rank > 0 && globals.log_level == "info") set_log_level("warn");
  mpi_partition_state state;
  int status = 0;
  try {
    // A launcher that started N copies without a way for MPI to join them (srun without
    // --mpi=pmix or pmi2, where Open MPI has no PMI) leaves N singletons, each rank 0 of 1:
    // they would race for one output. Each refuses before anything is written.
    if (const auto launch = detect_parallel_launch(); launch && launch->size != ranks) {
      state.writes_settled = true;  // no collective step ahead: each process stops by itself
      throw usage_error("started as one of " + std::to_string(launch->size) + " processes (" + launch->variable +
                        "), but MPI joined " + std::to_string(ranks) +
                        " of them: the launcher gave MPI no way to connect them (with Slurm: srun --mpi=pmix; "
                        "docs/mpi.md); nothing was written");
    }
    if (provided < MPI_THREAD_MULTIPLE)
      throw error("this MPI library gives threads level " + std::to_string(provided) + ", and moereg needs MPI_THREAD_MULTIPLE (" +
                  std::to_string(MPI_THREAD_MULTIPLE) + ") to exchange progress while it writes");
    cancel_on_signals on_signals;  // mpirun forwards ^C and SIGTERM: each rank stops cleanly
    require_one_job(job, lora, ranks, state);
    if (job.dry_run) {
      // Nothing is written: one plan, printed once.
      if (rank == 0) print_convert_report(take(app::convert(job)), job, globals);
      state.writes_settled = true;
    } else if (job.expert_parallel > 0) {
      // Rank r writes slices r, r + N, ...: with --ep equal to the number of ranks, ep-{r}.
      if (rank == 0) app::prepare_ep_output(job);
      MPI_Barrier(MPI_COMM_WORLD);
      app::convert_report r = convert_ep_slices_together(job, rank, ranks, state);
      r = sum_on_rank0(r);
      r.output = job.output;
      if (rank == 0) print_convert_report(r, job, globals);
    } else {
      if (rank == 0) job.on_progress = job_progress("all ranks");
      app::job_partition part = make_mpi_partition(rank, ranks, state);
      const app::convert_report r =
          lora ? app::run_lora_merge(merge_request(job, *lora), &part) : app::run_conversion(job, {}, nullptr, &part);
      if (rank == 0) print_convert_report(r, job, globals);
    }
  } catch (...) {
    status = report_failure(who, state);
    std::cerr.flush();
    // Before the writes settled, the other ranks may wait in a collective step for this one.
    if (!state.writes_settled) MPI_Abort(MPI_COMM_WORLD, status);
  }
  MPI_Finalize();
  return status;
}

}  // namespace moereg::cli
