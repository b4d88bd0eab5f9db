// SPDX-License-Identifier: Apache-2.0
// free_space.h - (in-tree) the room a job has before it writes: the free bytes of a
// directory's filesystem, whether that filesystem is a tmpfs (its files live in memory), and
// (with moereg/base/meminfo.h) the memory the kernel says is available. convert and moe bench
// check against them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "moereg/base/meminfo.h"

namespace moereg::app {

// The bytes an unprivileged writer may still put on `dir`'s filesystem; nullopt when the
// filesystem gives no figure.
std::optional<std::uint64_t> free_bytes(const std::string& dir);

// Whether `dir` lies on a tmpfs.
bool on_tmpfs(const std::string& dir);

}  // namespace moereg::app
