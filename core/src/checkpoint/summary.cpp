// SPDX-License-Identifier: Apache-2.0
#include "moereg/checkpoint/summary.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <tuple>

#include "moereg/base/units.h"
#include "moereg/gguf/ggml_type.h"

namespace moereg {

namespace {

bool all_digits(const std::string& s) {
  return !s.empty() && s.size() < 18 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Natural order: numeric components compare as numbers, so layers.2 sorts before layers.10.
bool natural_less(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (isdigit(static_cast<unsigned char>(a[i])) && isdigit(static_cast<unsigned char>(b[j]))) {
      std::size_t i2 = i, j2 = j;
      while (i2 < a.size() && isdigit(static_cast<unsigned char>(a[i2]))) ++i2;
      while (j2 < b.size() && isdigit(static_cast<unsigned char>(b[j2]))) ++j2;
      std::string na = a.substr(i, i2 - i), nb = b.substr(j, j2 - j);
      if (na.size() != nb.size()) return na.size() < nb.size();
      if (na != nb) return na < nb;
      i = i2;
      j = j2;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

}  // namespace

std::string format_number_set(const std::vector<std::int64_t>& v) {
  if (v.size() == 1) return std::to_string(v[0]);
  std::string out = "{";
  for (std::size_t i = 0; i < v.size();) {
    std::size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    if (out.size() > 1) out += ',';
    if (j - i >= 2) out += std::to_string(v[i]) + ".." + std::to_string(v[j]);
    else {
      out += std::to_string(v[i]);
      if (j > i) out += "," + std::to_string(v[j]);
    }
    i = j + 1;
  }
  return out + "}";
}

std::string human_bytes(std::uint64_t bytes) { return format_bytes(bytes); }

std::vector<folded_group> fold_tensor_names(const std::vector<tensor_info>& tensors) {
  struct acc {
    std::vector<std::set<std::int64_t>> numbers;
    std::string first_name, type_name;
    dtype type = dtype::U8;
    std::uint64_t count = 0, bytes = 0;
  };
  using key_t = std::tuple<std::string, int, std::vector<std::int64_t>>;
  std::map<key_t, acc> groups;
  for (const auto& t : tensors) {
    std::string tmpl;
    std::vector<std::int64_t> nums;
    std::size_t start = 0;
    while (start <= t.name.size()) {
      std::size_t dot = t.name.find('.', start);
      std::string part = t.name.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (all_digits(part)) {
        tmpl += "\x01";
        nums.push_back(std::stoll(part));
      } else {
        tmpl += part;
      }
      if (dot == std::string::npos) break;
      tmpl += '.';
      start = dot + 1;
    }
    // ggml block types get codes of their own, past every dtype value.
    int type_key = t.ggml_blocks ? 1000 + static_cast<int>(*t.ggml_blocks) : static_cast<int>(t.type);
    acc& a = groups[key_t{tmpl, type_key, element_shape(t)}];
    if (a.count == 0) {
      a.first_name = t.name;
      a.type_name = storage_type_name(t);
      a.type = t.type;
    }
    if (a.numbers.size() < nums.size()) a.numbers.resize(nums.size());
    for (std::size_t i = 0; i < nums.size(); ++i) a.numbers[i].insert(nums[i]);
    a.count++;
    a.bytes += t.nbytes();
  }
  std::vector<std::pair<std::string, folded_group>> rows;
  for (auto& [k, a] : groups) {
    folded_group g;
    g.type = a.type;
    g.type_name = a.type_name;
    g.shape = std::get<2>(k);
    g.count = a.count;
    g.bytes = a.bytes;
    std::size_t n = 0;
    for (char c : std::get<0>(k)) {
      if (c == '\x01') {
        std::vector<std::int64_t> v(a.numbers[n].begin(), a.numbers[n].end());
        g.pattern += format_number_set(v);
        ++n;
      } else {
        g.pattern += c;
      }
    }
    rows.emplace_back(a.first_name, std::move(g));
  }
  std::sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) { return natural_less(x.first, y.first); });
  std::vector<folded_group> out;
  out.reserve(rows.size());
  for (auto& r : rows) out.push_back(std::move(r.second));
  return out;
}

checkpoint_summary summarize(const checkpoint& ckpt) {
  checkpoint_summary s;
  s.path = ckpt.path();
  s.files = ckpt.files().size();
  s.has_index = ckpt.has_index();
  std::vector<tensor_info> all;
  all.reserve(ckpt.tensors().size());
  for (const auto& f : ckpt.files()) s.header_bytes += f->data_offset();
  for (const auto& e : ckpt.tensors()) {
    all.push_back(*e.info);
    auto& d = s.dtypes[storage_type_name(*e.info)];
    d.first++;
    d.second += e.info->nbytes();
  }
  s.tensor_count = all.size();
  s.total_bytes = ckpt.total_bytes();
  s.groups = fold_tensor_names(all);
  return s;
}

json::value summary_to_json(const checkpoint_summary& s) {
  json::object dtypes;
  for (const auto& [name, cb] : s.dtypes)
    dtypes.emplace_back(name, json::value(json::object{{"count", json::value(cb.first)}, {"bytes", json::value(cb.second)}}));
  json::array groups;
  for (const auto& g : s.groups) {
    json::array shape;
    for (auto d : g.shape) shape.emplace_back(json::value(d));
    groups.emplace_back(json::value(json::object{{"pattern", json::value(g.pattern)},
                                                 {"dtype", json::value(g.type_name)},
                                                 {"shape", json::value(std::move(shape))},
                                                 {"count", json::value(g.count)},
                                                 {"bytes", json::value(g.bytes)}}));
  }
  return json::value(json::object{{"path", json::value(s.path)},
                                  {"files", json::value(static_cast<std::uint64_t>(s.files))},
                                  {"has_index", json::value(s.has_index)},
                                  {"tensor_count", json::value(s.tensor_count)},
                                  {"total_bytes", json::value(s.total_bytes)},
                                  {"header_bytes", json::value(s.header_bytes)},
                                  {"dtypes", json::value(std::move(dtypes))},
                                  {"groups", json::value(std::move(groups))}});
}

}  // namespace moereg
