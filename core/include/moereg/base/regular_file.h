// SPDX-License-Identifier: Apache-2.0
// regular_file.h - opening a file that must hold bytes (a checkpoint shard, config.json, a
// tokenizer file, a recipe) without blocking on one that does not.
//
// open(2) of a FIFO with no writer blocks, and restarts after the signal handlers that let a
// conversion stop cleanly, so a FIFO named where config.json should be used to hang a
// command past ^C. These open with O_NONBLOCK (which changes nothing for a regular file's
// reads), refuse anything that is not a regular file, naming what it is, and then read or
// map as usual.
#pragma once

#include <sys/stat.h>

#include <string>

namespace moereg {

// A read-only descriptor (O_CLOEXEC, blocking mode restored) of the regular file at `path`
// (symbolic links followed). Throws moereg::error "PATH: cannot open: ..." or "PATH: is a FIFO,
// expected a regular file" (a directory, socket or device likewise). `st`, when given, gets the
// file's status (the fstat that checked it).
int open_regular_file(const std::string& path, struct stat* st = nullptr);

// The whole regular file at `path`, read through open_regular_file.
std::string read_regular_file(const std::string& path);

}  // namespace moereg
