// SPDX-License-Identifier: Apache-2.0
#include "launch_check.h"

#include <charconv>
#include <cstdlib>
#include <cstring>

#include "moereg/base/error.h"

namespace moereg::cli {

std::optional<parallel_launch> detect_parallel_launch() {
  // Open MPI's mpirun sets the first; MPICH's mpiexec (Hydra) and Slurm's srun --mpi=pmi2 the
  // second; srun sets the third for every task of a step, whatever its --mpi (with pmix, the
  // PMIx variables carry no count, and a batch script's own shell has no step count).
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"}) {
    const char* v = std::getenv(name);
    if (!v) continue;
    int n = 0;
    const char* end = v + std::strlen(v);
    auto [p, ec] = std::from_chars(v, end, n);
    if (ec != std::errc() || p != end) continue;  // not a count: not a launcher we know
    // The first launcher that says decides: Open MPI's mpirun inside a Slurm allocation
    // starts its daemons through srun, so `mpirun -np 1` there also inherits a step count.
    if (n > 1) return parallel_launch{n, std::string(name) + "=" + v};
    return std::nullopt;
  }
  return std::nullopt;
}

bool built_with_mpi() {
#ifdef MOEREG_HAVE_MPI
  return true;
#else
  return false;
#endif
}

void check_launch(const std::string& command) {
  auto launch = detect_parallel_launch();
  if (!launch) return;
  const std::string n = std::to_string(launch->size);
  if (!built_with_mpi())
    throw usage_error("started as one of " + n + " processes (" + launch->variable + "), but this moereg was built without MPI: " + n +
                      " copies would each run the whole job and race for one output. Run it once, or rebuild with MPI "
                      "(libopenmpi-dev; cmake -DMOEREG_MPI=ON) to share a conversion among them (docs/mpi.md)");
  if (command != "convert" && command != "lora merge")
    throw usage_error("started as one of " + n + " processes (" + launch->variable + "), but `moereg " + command +
                      "` runs as one process; only `moereg convert` and `moereg lora merge` share their work under "
                      "mpirun (docs/mpi.md)");
}

}  // namespace moereg::cli
