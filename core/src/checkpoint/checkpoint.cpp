// SPDX-License-Identifier: Apache-2.0
#include "moereg/checkpoint/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "moereg/base/error.h"
#include "moereg/base/printable.h"

namespace fs = std::filesystem;

namespace moereg {

namespace {
constexpr const char* index_name = "model.safetensors.index.json";

bool holds_gguf(const fs::path& dir) {
  for (const auto& de : fs::directory_iterator(dir))
    if (de.path().extension() == ".gguf" && de.path().filename().string()[0] != '.') return true;
  return false;
}
}  // namespace

const checkpoint::entry* checkpoint::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

void checkpoint::add_file(const std::string& path) {
  if (fs::path(path).extension() == ".gguf") files_.push_back(std::make_unique<gguf_tensor_file>(path));
  else files_.push_back(std::make_unique<safetensors_file>(path));
}

const gguf_file* checkpoint::gguf() const {
  for (const auto& f : files_)
    if (auto* g = dynamic_cast<const gguf_tensor_file*>(f.get())) return &g->gguf();
  return nullptr;
}

void checkpoint::build_index() {
  for (const auto& f : files_) {
    for (const auto& t : f->tensors()) {
      tensors_.push_back({f.get(), &t});
      total_bytes_ += t.nbytes();
    }
  }
  std::sort(tensors_.begin(), tensors_.end(),
            [](const entry& a, const entry& b) { return a.info->name < b.info->name; });
  by_name_.reserve(tensors_.size());
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    auto [it, fresh] = by_name_.emplace(tensors_[i].info->name, i);
    if (!fresh) {
      const entry& first = tensors_[it->second];
      throw error(path_ + ": tensor " + quote(tensors_[i].info->name) + " is stored twice: in " + first.file->path() +
                  " and in " + tensors_[i].file->path());
    }
  }
}

checkpoint checkpoint::open(const std::string& path, const checkpoint_options& options) {
  checkpoint c;
  c.path_ = path;
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw error(path + ": no such file or directory");

  if (!fs::is_directory(status)) {
    std::string ext = fs::path(path).extension().string();
    if (ext == ".gguf") {
      for (const auto& part : gguf_split_parts(path)) c.add_file(part);
    } else if (ext == ".safetensors") {
      c.add_file(path);
    } else {
      throw error(path + ": expected a checkpoint directory, a .safetensors file or a .gguf file");
    }
    c.build_index();
    return c;
  }

  c.is_directory_ = true;
  fs::path dir(path);
  if (fs::exists(dir / "config.json")) {
    c.config_path_ = (dir / "config.json").string();
    c.config_ = json::parse_file(c.config_path_);
    if (!c.config_.is_object()) throw error(c.config_path_ + ": expected a JSON object");
  } else if (fs::exists(dir / "params.json")) {
    // Native Mistral checkpoints: the family hook turns params.json into a config later.
    c.config_path_ = (dir / "params.json").string();
  } else if (options.require_config && !holds_gguf(dir)) {  // a GGUF model's config is its metadata
    throw error(path + ": missing config.json (a checkpoint directory needs config.json beside its .safetensors files)");
  }

  fs::path index = dir / index_name;
  if (!fs::exists(index))  // native formats name it after their files: consolidated.safetensors.index.json
    for (const auto& de : fs::directory_iterator(dir)) {
      std::string n = de.path().filename().string();
      if (n.size() > 23 && n.compare(n.size() - 23, 23, ".safetensors.index.json") == 0 && n[0] != '.') index = de.path();
    }
  if (fs::exists(index)) {
    c.has_index_ = true;
    std::string where = index.string();
    json::value doc = json::parse_file(where);
    const json::value* map = doc.find("weight_map");
    if (!doc.is_object() || !map || !map->is_object())
      throw error(where + ": expected an object with a \"weight_map\" object");
    std::set<std::string> shard_names;
    for (const auto& [key, shard] : map->as_object()) {
      if (!shard.is_string()) throw error(where + ": weight_map[\"" + key + "\"] must be a shard file name");
      const std::string& name = shard.as_string();
      if (name.find('/') != std::string::npos || name == "." || name == "..")
        throw error(where + ": weight_map[" + quote(key) + "] names " + quote(name) + ", expected a file in the same directory");
      shard_names.insert(name);
    }
    // model.safetensors beside an index that does not list it: transformers loads the single
    // file and ignores the index, so the two tools would read different models. Which one is
    // meant is not for moereg to guess.
    for (const auto& de : fs::directory_iterator(dir)) {
      const std::string n = de.path().filename().string();
      if (n[0] != '.' && de.path().extension() == ".safetensors" && !shard_names.count(n) &&
          (n == "model.safetensors" || n == "consolidated.safetensors"))
        throw error(path + ": holds both " + n + " and " + index.filename().string() + ", whose shards do not include it: " +
                    "two checkpoints in one directory (transformers would load " + n + "); remove the one that is not meant");
    }
    for (const auto& name : shard_names) {
      fs::path shard = dir / name;
      if (!fs::exists(shard)) throw error(where + ": shard " + quote(name) + " is listed but missing from " + path);
      c.add_file(shard.string());
    }
    c.build_index();
    // Every key the index lists is in the shard it names, and every shard tensor is listed.
    for (const auto& [key, shard] : map->as_object()) {
      const entry* e = c.find(key);
      std::string shard_path = (dir / shard.as_string()).string();
      if (!e || e->file->path() != shard_path)
        throw error(where + ": tensor " + quote(key) + " is listed in shard " + quote(shard.as_string()) + " but that shard does not hold it");
    }
    if (map->as_object().size() != c.tensors_.size()) {
      for (const auto& t : c.tensors_)
        if (!map->find(t.info->name))
          throw error(where + ": tensor " + quote(t.info->name) + " in " + t.file->path() + " is not listed in the index");
    }
    return c;
  }

  std::vector<std::string> shards, ggufs;
  for (const auto& de : fs::directory_iterator(dir)) {
    if (!de.is_regular_file() || de.path().filename().string()[0] == '.') continue;
    if (de.path().extension() == ".safetensors") shards.push_back(de.path().string());
    if (de.path().extension() == ".gguf") ggufs.push_back(de.path().string());
  }
  std::sort(shards.begin(), shards.end());
  std::sort(ggufs.begin(), ggufs.end());
  if (!ggufs.empty()) {
    if (!shards.empty())
      throw error(path + ": holds both .safetensors and .gguf files (" + fs::path(shards[0]).filename().string() + ", " +
                  fs::path(ggufs[0]).filename().string() + "); open one file directly");
    // One model: a single file, or the parts of one split set (opened from part 1).
    std::vector<std::string> parts = gguf_split_parts(ggufs[0]);
    if (parts != ggufs) {
      std::string list;
      for (const auto& g : ggufs) list += (list.empty() ? "" : ", ") + fs::path(g).filename().string();
      throw error(path + ": holds several .gguf files that are not one split model (" + list + "); open one file directly");
    }
    for (const auto& g : parts) c.add_file(g);
    c.build_index();
    return c;
  }
  for (const auto& s : shards) {
    // model-00001-of-00004.safetensors without its index: a sharded write that never finished.
    auto name = fs::path(s).filename().string();
    auto of = name.find("-of-");
    if (of != std::string::npos && of >= 6 && name[of - 6] == '-')
      throw error(path + ": shard " + quote(name) + " has no " + index_name +
                  " beside it (an interrupted or incomplete sharded checkpoint)");
  }
  if (shards.empty()) throw error(path + ": no .safetensors or .gguf files (and no " + index_name + ")");
  for (const auto& s : shards) c.add_file(s);
  c.build_index();
  return c;
}

}  // namespace moereg
