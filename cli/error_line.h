// SPDX-License-Identifier: Apache-2.0
// error_line.h - one line to standard error in one write(2): under mpirun or srun the
// processes share one stream, and a message written in pieces (std::cerr << a << b) can be
// cut by another process's line ("rank 1 of 3moereg: error: rank 2 of 3: ...").
#pragma once

#include <string>

namespace moereg::cli {

// Writes `text` and a newline to standard error as one write (retrying a partial one).
void print_error_line(const std::string& text);

}  // namespace moereg::cli
