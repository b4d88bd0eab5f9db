// SPDX-License-Identifier: Apache-2.0
#include "expert_parallel.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>

#include "convert_job.h"
#include "moereg/base/error.h"
#include "moereg/base/log.h"
#include "moereg/checkpoint/resume_log.h"

namespace fs = std::filesystem;

namespace moereg::app {

namespace {

// Sets a dotted path ("text_config.num_experts") of a parsed document that has it.
void set_path(json::value& doc, const std::string& dotted, json::value v) {
  const auto dot = dotted.find('.');
  if (dot == std::string::npos) {
    doc.set(dotted, std::move(v));
    return;
  }
  for (auto& [k, child] : doc.as_object())
    if (k == dotted.substr(0, dot) && child.is_object()) return set_path(child, dotted.substr(dot + 1), std::move(v));
  throw error("config.json: no object '" + dotted.substr(0, dot) + "' to hold the expert count of an expert slice");
}

// A slice's directory, resumed: complete (its resume log gone, its files in place), interrupted
// (its resume log kept), or not started.
enum class slice_state { absent, interrupted, complete };

slice_state state_of(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec) || fs::is_empty(dir, ec)) return slice_state::absent;
  if (fs::exists(fs::path(dir) / resume_log::file_name)) return slice_state::interrupted;
  return slice_state::complete;
}

}  // namespace

void refuse_slicing_a_slice(const json::value& config, const std::string& option) {
  if (config.find_path("moereg.expert_parallel") || config.find_path("moereg.expert_slice"))
    throw usage_error(option + ": the source is itself a slice of a larger model (its config.json has a `moereg` section "
                      "naming its global experts); slice the full checkpoint instead");
}

void refuse_running_a_slice(const json::value& config, const std::string& checkpoint) {
  const json::value* section = config.find_path("moereg.expert_parallel");
  if (!section) section = config.find_path("moereg.expert_slice");
  if (!section) return;
  std::string range;
  const json::value* first = section->find("first_expert");
  const json::value* ids = section->find("experts");
  const json::value* total = section->find("num_experts");
  if (first && ids && total && first->is_integer() && ids->is_array() && total->is_integer() && !ids->as_array().empty()) {
    const auto a = static_cast<long long>(first->as_int());
    const auto n = static_cast<long long>(ids->as_array().size());
    range = " (experts " + std::to_string(a) + ".." + std::to_string(a + n - 1) + " of " +
            std::to_string(static_cast<long long>(total->as_int())) + ")";
  }
  throw error(checkpoint + ": an expert slice of a larger model" + range +
              ", written by convert --experts or --ep; moe run routes over every expert, so run it on the full "
              "checkpoint");
}

std::string ep_slice_dir(const std::string& out, const ep_slice& slice) {
  return (fs::path(out) / ("ep-" + std::to_string(slice.rank) + "-of-" + std::to_string(slice.ranks))).string();
}

std::pair<std::int64_t, std::int64_t> ep_expert_range(const model_dims& dims, const ep_slice& slice) {
  const std::int64_t n = slice.ranks;
  if (n < 1 || dims.E % n != 0)
    throw usage_error("--ep " + std::to_string(n) + ": the model has E=" + std::to_string(dims.E) + " experts per layer (" +
                      dims.explain({"E"}) + "), which do not divide into " + std::to_string(n) +
                      " equal slices; use a divisor of E (an uneven split would give the ranks tensors of different shapes)");
  const std::int64_t per = dims.E / n;
  return {slice.rank * per, (slice.rank + 1) * per};
}

json::value ep_slice_config(const json::value& config, const model_dims& dims, const ep_slice& slice) {
  const auto [first, last] = ep_expert_range(dims, slice);
  return expert_range_config(config, dims, first, last, &slice);
}

json::value expert_range_config(const json::value& config, const model_dims& dims, std::int64_t first, std::int64_t last,
                                const ep_slice* slice) {
  // A deep copy: json values share their objects, and the session's config must stay the source's.
  json::value cfg = json::parse(json::dump(config), "config.json");
  const char* option = slice ? "an --ep slice" : "--experts A:B";
  auto field = dims.fields.find("E");
  if (field == dims.fields.end())
    throw error(std::string("config.json: E was not read from a field, so ") + option + " cannot say its expert count");
  set_path(cfg, field->second, json::value(last - first));
  // A slice of fewer experts than a token takes (mixtral's 8 over --ep 8) says top-k = its
  // count, so that the slice loads by itself (a router's top-k over E is refused when k > E);
  // the section below keeps the global top-k, which routing uses.
  auto k_field = dims.fields.find("K");
  if (dims.K > last - first && k_field != dims.fields.end()) set_path(cfg, k_field->second, json::value(last - first));
  json::array ids;
  for (std::int64_t e = first; e < last; ++e) ids.emplace_back(e);
  json::object section;
  if (slice) section = {{"rank", json::value(slice->rank)}, {"ranks", json::value(slice->ranks)}};
  section.emplace_back("num_experts", json::value(dims.E));
  section.emplace_back("top_k", json::value(dims.K));
  section.emplace_back("first_expert", json::value(first));
  section.emplace_back("experts", json::value(std::move(ids)));
  cfg.set("moereg", json::value(json::object{{slice ? "expert_parallel" : "expert_slice", json::value(std::move(section))}}));
  return cfg;
}

namespace {

// What an --ep job is: its options and its sources' identity. Recorded in OUT when the job
// starts; a --resume compares itself with it before it keeps any slice, because a complete
// slice keeps no resume log of its own (a resume from another source, layout or N kept the
// complete slices of the old job beside new ones, exit 0).
resume_log ep_record(const convert_request& r) {
  model_session s = open_session({r.source, r.family, r.from, r.to, r.plugin_paths});
  ep_expert_range(s.dims, {0, r.expert_parallel});  // refuses an uneven split before anything is made
  resume_log rec;
  rec.fingerprint = "ep";
  rec.options = {{"source", fs::weakly_canonical(r.source).string()},
                 {"--ep", std::to_string(r.expert_parallel)},
                 {"--to", r.to.empty() ? "(the source's layout)" : r.to},
                 {"--dtype", r.to_bf16 ? "bf16" : r.to_f32 ? "f32" : "(as stored)"},
                 {"--shard-size", r.shard_size ? std::to_string(*r.shard_size) + " bytes" : "(default)"}};
  identify_sources(*s.ckpt, rec);
  return rec;
}

void check_ep_record(const convert_request& r, const resume_log& now) {
  const std::optional<resume_log> old = resume_log::load(r.output, ep_record_name);
  if (!old) {
    for (const auto& de : fs::directory_iterator(r.output))
      if (de.path().filename().string().rfind("ep-", 0) == 0)
        throw error(r.output + ": its --ep slices have no record of the job that wrote them (" + ep_record_name +
                    "; outputs of moereg before session 29 have none), so a resume cannot check them against this command; convert into a "
                    "new directory");
    return;
  }
  std::string differ;
  for (const auto& [k, v] : now.options)
    if (auto it = old->options.find(k); it == old->options.end() || it->second != v)
      differ += (differ.empty() ? "" : ", ") + k + " was " + (it == old->options.end() ? "none" : it->second) + ", now " + v;
  if (!differ.empty())
    throw error(r.output + ": the interrupted --ep job had other options (" + differ +
                "); resume it with the same options, or convert into a new directory");
  old->check_sources(now);
}

}  // namespace

bool prepare_ep_output(const convert_request& r) {
  if (r.experts) throw usage_error("convert: --ep N writes expert ranges of its own; it does not combine with --experts A:B");
  if (r.dry_run) return false;
  std::error_code ec;
  const bool exists = fs::exists(r.output, ec);
  const resume_log rec = ep_record(r);
  if (r.resume) {
    if (!exists) throw error(r.output + ": nothing to resume (it does not exist)");
    check_ep_record(r, rec);
    if (!fs::exists(fs::path(r.output) / ep_record_name)) rec.save(r.output, ep_record_name);
    return false;
  }
  if (exists && !(fs::is_directory(r.output, ec) && fs::is_empty(r.output, ec)))
    throw error(r.output + ": exists and is not an empty directory (expected a new directory for the --ep slices, or --resume)");
  fs::create_directories(r.output);
  // Made exclusively: of two --ep jobs started into one empty OUT, the second is refused here
  // (each slice has its own lock, but two jobs of different N write different slices).
  const fs::path marker = fs::path(r.output) / ep_record_name;
  const int fd = ::open(marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    throw error(r.output + ": " + (errno == EEXIST ? std::string("another --ep job started writing into it") : std::strerror(errno)) +
                " (" + ep_record_name + ")");
  ::close(fd);
  rec.save(r.output, ep_record_name);
  return !exists;
}

convert_report convert_ep_slices(const convert_request& r, int rank, int ranks) {
  convert_report total;
  bool first_report = true;
  for (int k = rank; k < r.expert_parallel; k += ranks) {
    const ep_slice slice{k, r.expert_parallel};
    convert_request part = r;
    part.output = r.dry_run ? r.output : ep_slice_dir(r.output, slice);
    if (r.resume) {
      const slice_state st = state_of(part.output);
      if (st == slice_state::complete) {
        spdlog::info("{}: complete, kept", part.output);
        continue;
      }
      part.resume = st == slice_state::interrupted;
    }
    convert_report rep = run_conversion(part, {}, &slice);
    if (first_report) {
      first_report = false;
      total = rep;
      total.output = r.output;
      continue;
    }
    total.tensors += rep.tensors;
    total.total_bytes += rep.total_bytes;
    total.shards += rep.shards;
    total.resumed_shards += rep.resumed_shards;
    total.plan_seconds += rep.plan_seconds;
    total.write_seconds += rep.write_seconds;
    total.plan.insert(total.plan.end(), rep.plan.begin(), rep.plan.end());
  }
  return total;
}

convert_report convert_expert_parallel(const convert_request& r) {
  const bool new_out = prepare_ep_output(r);
  // A slice that fails removes what it made; OUT goes too if it was new and nothing but the
  // job's record is left.
  struct remove_if_empty {
    const std::string& dir;
    bool armed;
    ~remove_if_empty() {
      std::error_code ec;
      if (!armed || !fs::is_directory(dir, ec)) return;
      for (const auto& de : fs::directory_iterator(dir, ec))
        if (de.path().filename() != ep_record_name) return;
      fs::remove(fs::path(dir) / ep_record_name, ec);
      fs::remove(dir, ec);
    }
  } cleanup{r.output, new_out};
  return convert_ep_slices(r, 0, 1);
}

}  // namespace moereg::app
