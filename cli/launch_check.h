// SPDX-License-Identifier: Apache-2.0
// launch_check.h - refuses to run as one of several copies a parallel launcher (mpirun,
// mpiexec, srun) started, unless the command coordinates them through MPI: N
// uncoordinated copies of a conversion would race for one output directory.
#pragma once

#include <optional>
#include <string>

namespace moereg::cli {

struct parallel_launch {
  int size = 1;          // processes the launcher started
  std::string variable;  // the environment variable that says so: "OMPI_COMM_WORLD_SIZE=4"
};

// The launch this process is part of, when a launcher started more than one process.
std::optional<parallel_launch> detect_parallel_launch();

// Whether this build has the MPI front end (CMake option MOEREG_MPI).
bool built_with_mpi();

// Throws usage_error when started as one of several processes and `command` cannot share the
// work among them: any command of a build without MPI, any command but convert with it.
void check_launch(const std::string& command);

}  // namespace moereg::cli
