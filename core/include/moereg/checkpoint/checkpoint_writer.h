// SPDX-License-Identifier: Apache-2.0
// checkpoint_writer.h - writes a checkpoint directory: shards, config, index.
//
// The full list of output tensors is known before any byte is written (moereg plans
// first), so shard boundaries are fixed up front: tensors go to shards in order and a new
// shard starts when the next tensor would push the current one past shard_size (a tensor
// larger than shard_size gets a shard of its own). Shards are written under hidden
// temporary names and renamed when complete.
//
// What makes an output complete is the file a loader looks for first, and it appears last,
// after config.json and every other file: the index for a sharded output; for a one-file
// output (model.safetensors, consolidated.safetensors, model.gguf) that file itself, which
// commit_shard() closes but only finish() renames into place. So an interrupted run never
// leaves a directory that looks complete.
//
// The writer holds the output's lock (output_lock.h) from construction to finish() or
// abort(): no other moereg process writes into or cleans up the directory meanwhile.
// abort() (also run by the destructor unless finish() or keep_for_resume() ran) removes
// what this writer made and nothing else.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "moereg/base/mapping_fault.h"
#include "moereg/checkpoint/output_lock.h"
#include "moereg/safetensors/safetensors_writer.h"

namespace moereg {

struct checkpoint_writer_options {
  std::uint64_t shard_size = 0;   // 0: one file, model.safetensors
  bool force_index = false;       // write an index even for one shard
  std::string file_stem = "model";  // model.safetensors, model-00001-of-00003.safetensors, model.safetensors.index.json
  std::map<std::string, std::string> metadata{{"format", "pt"}};
};

struct shard_plan {
  std::string index_name;            // <stem>.safetensors.index.json
  std::string file_name;
  std::vector<tensor_spec> tensors;  // in file order
  std::uint64_t bytes = 0;
};

// Split specs (already in the desired order) into shards.
std::vector<shard_plan> plan_shards(std::vector<tensor_spec> specs, const checkpoint_writer_options& options);

// Makes the file of one shard. The default writes safetensors (safetensors_writer with the
// given __metadata__); a GGUF output passes gguf_sink_factory (gguf/gguf_output.h).
using sink_factory = std::function<std::unique_ptr<tensor_sink>(const std::string& path, const shard_plan& shard,
                                                                 const std::map<std::string, std::string>& metadata)>;

class checkpoint_writer {
 public:
  // Locks out_dir, creating it if missing (and removing it again on abort). An existing,
  // non-empty out_dir is refused unless allow_existing. Throws if another process holds it.
  checkpoint_writer(std::string out_dir, std::vector<shard_plan> shards, bool allow_existing = false,
                    sink_factory make_sink = {});
  // Joins a job whose coordinator (another process) locked out_dir and checked it: writes
  // shards into it, takes no lock, and leaves the directory, configuration and index to the
  // coordinator (output_lock::joined).
  checkpoint_writer(std::string out_dir, std::vector<shard_plan> shards, output_lock::joined_t, sink_factory make_sink = {});
  checkpoint_writer(const checkpoint_writer&) = delete;
  checkpoint_writer& operator=(const checkpoint_writer&) = delete;
  ~checkpoint_writer();

  const std::vector<shard_plan>& shards() const { return shards_; }
  const std::string& out_dir() const { return out_dir_; }

  // Open shard i for writing. Several shards may be open at once (they are written in
  // parallel: one file per thread group avoids contending for one file's inode lock).
  tensor_sink& open_shard(std::size_t i, const std::map<std::string, std::string>& metadata);
  // Commit shard i (rename into place; a one-file output is only closed, see above).
  // Thread-safe.
  void commit_shard(std::size_t i);
  // Commit every open shard.
  void commit_shard();

  // Write a small auxiliary file atomically (config.json, params.json).
  void write_file(const std::string& name, const std::string& contents);

  // A file the caller writes into out_dir for its own bookkeeping (the resume log): removed
  // when the output is complete, and by abort() if created_here (a resumed job keeps the
  // log it found).
  void add_bookkeeping_file(const std::string& name, bool created_here);

  // Rename a one-file output into place, or write the index (when there is more than one
  // shard or write_index), remove the bookkeeping files and release the lock.
  void finish(bool write_index);

  // Remove everything this writer created and release the lock; if its lock file was removed
  // or replaced meanwhile (another process may own the directory now), remove only its
  // temporary files.
  void abort() noexcept;

  // Stop, keeping what a later --resume can use: committed shards and bookkeeping files stay,
  // open shards' temporary files are removed; the lock is released.
  void keep_for_resume() noexcept;

 private:
  // Throws when the lock file is no longer this writer's (output_lock::held).
  void refuse_if_lock_lost() const;

  std::string out_dir_;
  output_lock lock_;
  mapping_fault_guard fault_guard_;
  std::vector<shard_plan> shards_;
  sink_factory make_sink_;
  std::map<std::size_t, std::unique_ptr<tensor_sink>> open_;
  std::unique_ptr<tensor_sink> sealed_;  // the one-file output, renamed by finish()
  std::vector<std::string> created_;
  std::vector<std::pair<std::string, bool>> bookkeeping_;
  std::mutex mutex_;
  bool finished_ = false;
};

// Write `contents` to path via a temporary file and rename.
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace moereg
