// SPDX-License-Identifier: Apache-2.0
#include "convert_recipe.h"

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <set>
#include <utility>
#include <vector>

#include "moereg/app/model.h"
#include "moereg/base/cancel.h"
#include "moereg/base/error.h"
#include "moereg/base/printable.h"
#include "moereg/base/strict_yaml.h"

namespace moereg::cli {

std::map<std::string, recipe_value> read_recipe(const std::string& path) {
  YAML::Node root = load_strict_yaml_file(path);  // duplicate keys refused
  if (!root.IsMap()) throw error(yaml_where(path, root) + ": a recipe is a map of keys (source, output, to, ...)");
  static const std::set<std::string> keys = {"description", "source", "output", "to", "from", "family",
                                             "shard_size", "threads", "experts", "dry_run", "dtype"};
  std::map<std::string, recipe_value> values;
  for (const auto& kv : root) {
    const std::string where = yaml_where(path, kv.first);
    if (!kv.first.IsScalar()) throw error(where + ": a recipe's keys are names (source, output, to, ...)");
    std::string k = kv.first.Scalar();
    if (!keys.count(k)) {
      std::string list;
      for (const auto& x : keys) list += (list.empty() ? "" : ", ") + x;
      throw error(where + ": unknown key " + quote(k) + ", expected one of: " + list);
    }
    if (k == "description") continue;
    if (!kv.second.IsScalar()) throw error(where + ": " + quote(k) + " must be a single value");
    std::string v = kv.second.Scalar();
    if (k == "dry_run") {
      // YAML 1.2 booleans only: `yes` or `True` must not quietly mean "really convert".
      auto b = strict_bool(kv.second);
      if (!b)
        throw error(where + ": dry_run " + quote(v) + ": expected true or false" +
                    (kv.second.Tag() == "!" ? std::string(", unquoted (quoted, it is a string)") : std::string()));
      v = *b ? "true" : "false";
    }
    values[k] = {v, where};
  }
  return values;
}

std::map<std::string, recipe_value> merge_recipe(const std::map<std::string, recipe_value>& recipe,
                                                 std::map<std::string, std::string>& opts,
                                                 const std::map<std::string, std::string>& option_names) {
  std::map<std::string, recipe_value> taken;
  for (const auto& [key, value] : recipe) {
    auto given = opts.find(key);
    if (given == opts.end()) {
      opts[key] = value.text;
      taken[key] = value;
    } else if (given->second != value.text) {
      auto name = option_names.find(key);
      spdlog::warn("{}: {} {} is overridden by the command line: {} {}", value.where, key, quote(value.text),
                   name == option_names.end() ? key : name->second, quote(given->second));
    }
  }
  return taken;
}

namespace {

// Keeps moereg's log quiet while the value at fault is looked for: its dry runs would log
// their plans again.
class quiet_log {
 public:
  quiet_log() : level_(spdlog::get_level()) { spdlog::set_level(spdlog::level::off); }
  ~quiet_log() { spdlog::set_level(level_); }
  quiet_log(const quiet_log&) = delete;
  quiet_log& operator=(const quiet_log&) = delete;

 private:
  spdlog::level::level_enum level_;
};

bool same_problem(const app::result<app::convert_report>& r, const app::problem& p) {
  return !r.ok() && r.error().kind == p.kind && r.error().message == p.message;
}

bool opens(const app::convert_request& j, bool with_family_and_from) {
  app::open_request o;
  o.path = j.source;
  o.plugin_paths = j.plugin_paths;
  if (with_family_and_from) {
    o.family = j.family;
    o.layout = j.from;
  }
  return app::open_model(o).ok();
}

// How the job runs without one recipe value: with what the key's absence means. false when
// there is no such job (`to` needs the source layout, which needs the checkpoint to open).
using without_value = std::function<bool(app::convert_request&)>;

// In the order the job checks the values: a value read later is tried first, so that a value
// checked earlier is blamed only when its own absence removes the failure.
const std::vector<std::pair<std::string, without_value>>& recipe_keys() {
  static const std::vector<std::pair<std::string, without_value>> keys = {
      {"output",
       [](app::convert_request& j) {
         j.output.clear();
         j.resume = false;
         return true;
       }},
      {"dtype", [](app::convert_request& j) { j.to_bf16 = j.to_f32 = false; return true; }},
      {"experts", [](app::convert_request& j) { j.experts.reset(); return true; }},
      {"shard_size", [](app::convert_request& j) { j.shard_size.reset(); return true; }},
      {"threads", [](app::convert_request& j) { j.threads = 0; return true; }},
      {"to",
       [](app::convert_request& j) {
         // A conversion to the layout the checkpoint is stored in.
         app::open_request o{j.source, j.family, j.from, j.plugin_paths};
         auto m = app::open_model(o);
         if (!m.ok()) return false;
         j.to = m.value().layout;
         return true;
       }},
      {"from", [](app::convert_request& j) { j.from.clear(); return true; }},
      {"family", [](app::convert_request& j) { j.family.clear(); return true; }},
  };
  return keys;
}

// The recipe value the job's failure is about, or nullptr (a command-line value, or no value).
const std::pair<const std::string, recipe_value>* value_at_fault(const app::convert_request& job,
                                                                   const std::map<std::string, recipe_value>& taken) {
  quiet_log quiet;
  app::convert_request probe = job;
  probe.dry_run = true;
  probe.on_progress = nullptr;
  probe.cancel = nullptr;
  auto reference = app::convert(probe);
  if (reference.ok()) {
    // Planned and checked without a fault: what failed was writing OUT.
    auto out = taken.find("output");
    return job.dry_run || out == taken.end() ? nullptr : &*out;
  }
  const app::problem failure = reference.error();
  for (const auto& [key, without] : recipe_keys()) {
    auto t = taken.find(key);
    if (t == taken.end()) continue;
    app::convert_request other = probe;
    if (without(other) && !same_problem(app::convert(other), failure)) return &*t;
  }
  // The checkpoint itself: it does not open, with or without the family and layout given for it.
  auto src = taken.find("source");
  if (src != taken.end() && !opens(job, true) && !opens(job, false)) return &*src;
  return nullptr;
}

[[noreturn]] void blame(const std::pair<const std::string, recipe_value>& v, const std::string& message) {
  throw error(v.second.where + ": " + v.first + " " + quote(v.second.text) + ": " + message);
}

}  // namespace

int run_with_recipe(const app::convert_request& job, const std::map<std::string, recipe_value>& taken,
                    const std::function<int()>& run) {
  if (taken.empty()) return run();
  try {
    return run();
  } catch (const cancelled&) {
    throw;  // stopped by a signal: nothing to blame, and no more work
  } catch (const error& e) {
    if (auto v = value_at_fault(job, taken)) blame(*v, e.what());
    throw;
  } catch (const usage_error& e) {
    if (auto v = value_at_fault(job, taken)) blame(*v, e.what());
    throw;
  }
}

}  // namespace moereg::cli
