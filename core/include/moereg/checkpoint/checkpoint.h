// SPDX-License-Identifier: Apache-2.0
// checkpoint.h - a checkpoint on disk: a directory (config plus one file, or an index and
// shards), a single .safetensors file, or a GGUF model (a .gguf file, a split set given by
// its first part, or a directory holding one), opened as one name -> tensor map.
//
// Opening maps every shard and validates every header and the index, and reads no tensor
// data. Errors name the file and the key: a shard the index names but that is missing, a
// key the index puts in a shard that does not hold it, a key in two shards, a shard
// tensor the index does not list, an unreadable config.json.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "moereg/base/json.h"
#include "moereg/gguf/gguf_tensor_file.h"
#include "moereg/safetensors/safetensors_reader.h"

namespace moereg {

struct checkpoint_options {
  // A directory must hold config.json (or a native config such as params.json) unless false.
  bool require_config = true;
};

class checkpoint {
 public:
  struct entry {
    const tensor_file* file;
    const tensor_info* info;
    const std::byte* data() const { return file->data(*info); }
  };

  static checkpoint open(const std::string& path, const checkpoint_options& options = {});

  const std::string& path() const { return path_; }
  bool is_directory() const { return is_directory_; }
  // config.json contents, or a null value when there is none.
  const json::value& config() const { return config_; }
  const std::string& config_path() const { return config_path_; }
  const std::vector<std::unique_ptr<tensor_file>>& files() const { return files_; }
  // The first GGUF file (whose metadata describes the model), or nullptr for safetensors.
  const gguf_file* gguf() const;
  // Every tensor, sorted by name.
  const std::vector<entry>& tensors() const { return tensors_; }
  const entry* find(std::string_view name) const;
  std::uint64_t total_bytes() const { return total_bytes_; }
  bool has_index() const { return has_index_; }

  // Replace the config (a family hook may synthesise one from a native file).
  void set_config(json::value config, std::string from) {
    config_ = std::move(config);
    config_path_ = std::move(from);
  }

 private:
  void add_file(const std::string& path);
  void build_index();

  std::string path_;
  bool is_directory_ = false;
  bool has_index_ = false;
  json::value config_;
  std::string config_path_;
  std::vector<std::unique_ptr<tensor_file>> files_;
  std::vector<entry> tensors_;
  std::unordered_map<std::string_view, std::size_t> by_name_;
  std::uint64_t total_bytes_ = 0;
};

}  // namespace moereg
