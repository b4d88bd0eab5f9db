// SPDX-License-Identifier: Apache-2.0
// executor.h - moves the bytes of a conversion plan into a checkpoint_writer.
//
// Work items are (output tensor, expert slot) pairs, taken by N threads. A piece that is
// contiguous in both source and target goes from the mapped source file to the output
// file with one pwrite (one copy, by the kernel); anything else (transposes, hooks) is
// assembled in a per-thread staging buffer of one expert slot. Source pages are released
// (MADV_DONTNEED) as soon as they are consumed, so resident memory stays bounded by the
// staging buffers, not the model size.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "moereg/checkpoint/checkpoint_writer.h"
#include "moereg/plan/conversion_plan.h"

namespace moereg {

// Runs a named hook on one tensor: direction 0 = decode (stored -> canonical), 1 = encode.
using hook_runner = std::function<void(const std::string& hook, int direction, const std::string& key,
                                       const tensor_spec& spec, const std::byte* src, std::byte* dst)>;

struct execute_progress {
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> tensors{0};
  std::uint64_t total_bytes = 0;
  std::uint64_t total_tensors = 0;
};

struct execute_options {
  int threads = 0;  // 0: all cores
  hook_runner hooks;
  execute_progress* progress = nullptr;
  std::map<std::string, std::string> metadata{{"format", "pt"}};
  // Shards to skip because a previous run completed them (--resume).
  std::vector<bool> skip_shards;
  // Called after each shard is committed (renamed into place), with its index.
  std::function<void(std::size_t)> on_shard_done;
  // Contiguous pieces go from the source file to the output by copy_file_range (the kernel
  // copies; reflinks on filesystems that share extents). false: write() from the mapping,
  // for filesystems where copy_file_range misbehaves, and to measure the difference.
  bool kernel_copy = true;
};

// Writes every shard of `writer` (whose shard plan came from plan.outputs) and commits them.
void execute_plan(const conversion_plan& plan, checkpoint_writer& writer, const execute_options& options);

// Writes output tensor `output` of the plan into `dst` (its spec's nbytes()), in memory: a
// checkpoint read in another layout without a file written (app/tensors.h). The same writers
// as execute_plan make the bytes, so they equal what a conversion writes; expert slots are
// assembled by up to options.threads threads, and source pages are released as they are
// consumed, so memory stays bounded by `dst` and one staging slot per thread.
void produce_tensor(const conversion_plan& plan, std::size_t output, std::byte* dst, const execute_options& options);

// Copy a logical [rows, cols] matrix into dst with element strides (dst_row, dst_col).
void copy_matrix(const matrix_view& src, std::byte* dst, std::int64_t dst_row_stride, std::int64_t dst_col_stride);

}  // namespace moereg
