#include "moereg/checkpoint/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "moereg/base/error.h"

namespace fs = std::filesystem;

namespace moereg {

namespace {
constexpr const char* index_name = "model.safetensors.index.json";
}

const checkpoint::entry* checkpoint::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

void checkpoint::add_file(const std::string& path) {
  files_.push_back(std::make_unique<safetensors_file>(path));
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
      throw error(path_ + ": tensor '" + tensors_[i].info->name + "' is stored twice: in " + first.file->path() +
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
    if (fs::path(path).extension() != ".safetensors")
      throw error(path + ": expected a checkpoint directory or a .safetensors file");
    c.add_file(path);
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
  } else if (options.require_config) {
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
        throw error(where + ": weight_map[\"" + key + "\"] names '" + name + "', expected a file in the same directory");
      shard_names.insert(name);
    }
    for (const auto& name : shard_names) {
      fs::path shard = dir / name;
      if (!fs::exists(shard)) throw error(where + ": shard '" + name + "' is listed but missing from " + path);
      c.add_file(shard.string());
    }
    c.build_index();
    // Every key the index lists is in the shard it names, and every shard tensor is listed.
    for (const auto& [key, shard] : map->as_object()) {
      const entry* e = c.find(key);
      std::string shard_path = (dir / shard.as_string()).string();
      if (!e || e->file->path() != shard_path)
        throw error(where + ": tensor '" + key + "' is listed in shard '" + shard.as_string() + "' but that shard does not hold it");
    }
    if (map->as_object().size() != c.tensors_.size()) {
      for (const auto& t : c.tensors_)
        if (!map->find(t.info->name))
          throw error(where + ": tensor '" + t.info->name + "' in " + t.file->path() + " is not listed in the index");
    }
    return c;
  }

  std::vector<std::string> shards;
  for (const auto& de : fs::directory_iterator(dir)) {
    if (de.is_regular_file() && de.path().extension() == ".safetensors" && de.path().filename().string()[0] != '.')
      shards.push_back(de.path().string());
  }
  std::sort(shards.begin(), shards.end());
  for (const auto& s : shards) {
    // model-00001-of-00004.safetensors without its index: a sharded write that never finished.
    auto name = fs::path(s).filename().string();
    auto of = name.find("-of-");
    if (of != std::string::npos && of >= 6 && name[of - 6] == '-')
      throw error(path + ": shard '" + name + "' has no " + index_name +
                  " beside it (an interrupted or incomplete sharded checkpoint)");
  }
  if (shards.empty()) throw error(path + ": no .safetensors files (and no " + index_name + ")");
  for (const auto& s : shards) c.add_file(s);
  c.build_index();
  return c;
}

}  // namespace moereg
