// SPDX-License-Identifier: Apache-2.0
#include "moereg/checkpoint/checkpoint_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "moereg/base/cancel.h"
#include "moereg/base/error.h"
#include "moereg/base/partial_file.h"
#include "moereg/base/json.h"
#include "moereg/base/test_stop.h"

namespace fs = std::filesystem;

namespace moereg {

std::vector<shard_plan> plan_shards(std::vector<tensor_spec> specs, const checkpoint_writer_options& options) {
  std::vector<shard_plan> shards;
  shards.emplace_back();
  for (auto& s : specs) {
    std::uint64_t n = s.nbytes();
    if (options.shard_size && !shards.back().tensors.empty() && shards.back().bytes + n > options.shard_size)
      shards.emplace_back();
    shards.back().bytes += n;
    shards.back().tensors.push_back(std::move(s));
  }
  for (auto& s : shards) s.index_name = options.file_stem + ".safetensors.index.json";
  if (shards.size() == 1 && !options.force_index) {
    shards[0].file_name = options.file_stem + ".safetensors";
  } else {
    char buf[64];
    for (std::size_t i = 0; i < shards.size(); ++i) {
      std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      shards[i].file_name = options.file_stem + buf;
    }
  }
  return shards;
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  const std::string tmp = partial_path_of(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw error(tmp + ": cannot create: " + std::strerror(errno));
    out << contents;
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw error(tmp + ": cannot write: " + io_error_text(errno));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw error(path + ": cannot rename into place: " + std::strerror(errno));
  }
}

checkpoint_writer::checkpoint_writer(std::string out_dir, std::vector<shard_plan> shards, bool allow_existing,
                                     sink_factory make_sink)
    : out_dir_(std::move(out_dir)), lock_(out_dir_), shards_(std::move(shards)), make_sink_(std::move(make_sink)) {
  // Checked under the lock: another writer cannot fill it between the check and our writes.
  if (!allow_existing && !lock_.dir_is_empty())
    throw error(out_dir_ + ": output directory exists and is not empty (choose a new directory, or --resume)");
  test_stop_point("output-locked");
}

checkpoint_writer::checkpoint_writer(std::string out_dir, std::vector<shard_plan> shards, output_lock::joined_t,
                                     sink_factory make_sink)
    : out_dir_(std::move(out_dir)),
      lock_(out_dir_, output_lock::joined),
      shards_(std::move(shards)),
      make_sink_(std::move(make_sink)) {}

checkpoint_writer::~checkpoint_writer() {
  if (!finished_) abort();
}

tensor_sink& checkpoint_writer::open_shard(std::size_t i, const std::map<std::string, std::string>& metadata) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (open_.count(i)) throw error(out_dir_ + ": internal: shard " + std::to_string(i) + " is already open");
  const auto& s = shards_.at(i);
  std::string path = (fs::path(out_dir_) / s.file_name).string();
  if (make_sink_) return *(open_[i] = make_sink_(path, s, metadata));
  return *(open_[i] = std::make_unique<safetensors_writer>(path, s.tensors, metadata));
}

void checkpoint_writer::commit_shard(std::size_t i) {
  refuse_if_lock_lost();
  std::unique_ptr<tensor_sink> w;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = open_.find(i);
    if (it == open_.end()) return;
    w = std::move(it->second);
    open_.erase(it);
  }
  // On failure, w's destructor removes the temporary file.
  if (shards_.size() == 1) {
    w->seal();
    std::lock_guard<std::mutex> lock(mutex_);
    sealed_ = std::move(w);
    return;
  }
  w->commit();
  std::lock_guard<std::mutex> lock(mutex_);
  created_.push_back(w->final_path());
}

void checkpoint_writer::commit_shard() {
  std::vector<std::size_t> ids;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [i, _] : open_) ids.push_back(i);
  }
  for (auto i : ids) commit_shard(i);
}

void checkpoint_writer::write_file(const std::string& name, const std::string& contents) {
  throw_if_cancelled();
  std::string path = (fs::path(out_dir_) / name).string();
  write_file_atomic(path, contents);
  created_.push_back(path);
}

void checkpoint_writer::add_bookkeeping_file(const std::string& name, bool created_here) {
  bookkeeping_.emplace_back((fs::path(out_dir_) / name).string(), created_here);
}

void checkpoint_writer::finish(bool write_index) {
  if (!open_.empty()) throw error(out_dir_ + ": internal: finish() with a shard still open");
  test_stop_point("before-complete");
  if (sealed_) {
    sealed_->commit();
    created_.push_back(sealed_->final_path());
    sealed_.reset();
  }
  // Every shard is in OUT before the file that makes it complete is written. Under MPI other
  // processes wrote some: a node whose OUT is not the shared directory (a local disk at the same
  // path) left them elsewhere, and the output looked complete with half its shards.
  for (const auto& s : shards_) {
    const fs::path p = fs::path(out_dir_) / s.file_name;
    std::error_code ec;
    if (!fs::is_regular_file(p, ec))
      throw error(p.string() + ": missing when the output was to be completed; a shard another process wrote is not in " +
                  out_dir_ + " as this one sees it (under MPI, OUT must be one directory shared by every process)");
  }
  if (write_index) {
    std::uint64_t total = 0;
    for (const auto& s : shards_) total += s.bytes;
    // Same shape as the index transformers writes: metadata.total_size, sorted weight_map.
    std::vector<std::pair<std::string, std::string>> entries;
    for (const auto& s : shards_)
      for (const auto& t : s.tensors) entries.emplace_back(t.name, s.file_name);
    std::sort(entries.begin(), entries.end());
    json::object map;
    map.reserve(entries.size());
    for (auto& [k, v] : entries) map.emplace_back(std::move(k), json::value(std::move(v)));
    json::value doc(json::object{{"metadata", json::value(json::object{{"total_size", json::value(total)}})},
                                 {"weight_map", json::value(std::move(map))}});
    write_file(shards_.front().index_name, json::dump(doc, 2) + "\n");
  }
  // Complete: a resume log left now (if we are killed here) only makes --resume rewrite the
  // small files.
  std::error_code ec;
  for (const auto& [p, _] : bookkeeping_) fs::remove(p, ec);
  finished_ = true;
  lock_.release(false);
}

void checkpoint_writer::refuse_if_lock_lost() const {
  if (!lock_.held())
    throw error(out_dir_ + ": its lock file " + output_lock::file_name +
                " was removed or replaced while this job wrote into it, so another process may be writing there now; this "
                "job stops and leaves the shards it completed (never delete the lock of a running job; once no moereg writes "
                "there, --resume finishes it)");
}

void checkpoint_writer::abort() noexcept {
  if (!lock_.held()) {
    // Another process took the directory: what this one completed stays for it (or for
    // --resume), and its lock file is not ours to remove.
    open_.clear();  // this job's temporary files
    sealed_.reset();
    created_.clear();
    finished_ = true;
    lock_.release(false);
    return;
  }
  open_.clear();  // each open writer deletes its temporary file
  sealed_.reset();
  std::error_code ec;
  for (const auto& p : created_) fs::remove(p, ec);
  for (const auto& [p, mine] : bookkeeping_)
    if (mine) fs::remove(p, ec);
  created_.clear();
  finished_ = true;
  lock_.release(true);  // and the directory, if the lock made it and it is empty now
}

void checkpoint_writer::keep_for_resume() noexcept {
  open_.clear();
  sealed_.reset();  // a one-file output is only ever kept whole, under its own name
  created_.clear();
  finished_ = true;
  lock_.release(false);
}

}  // namespace moereg
