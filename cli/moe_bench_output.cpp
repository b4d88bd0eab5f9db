// SPDX-License-Identifier: Apache-2.0
#include "moe_bench_output.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "moereg/base/json.h"
#include "moereg/base/units.h"

namespace moereg::cli {

namespace {

// A row's weight bytes per second over the bandwidth ("of bw"), NaN when the probe stated a doubt.
double bandwidth_fraction(const app::moe_bench_report& rep, const app::moe_bench_row& r) {
  return rep.bandwidth_doubt.empty() ? r.weight_bytes / r.seconds / rep.bandwidth : std::nan("");
}

// The share of a row's cycle of experts the host's last-level cache can hold (NaN on a device
// or with the cache size unknown). A cache that keeps part of a repeated stream (Intel's resist
// thrashing) serves up to that share from itself, so "of bw" can read up to 1 / (1 - share).
double cache_share(const app::moe_bench_report& rep, const app::moe_bench_row& r) {
  if (rep.on_device || !rep.last_level_cache || !(r.cycle_bytes > 0)) return std::nan("");
  return std::min(1.0, static_cast<double>(rep.last_level_cache) / r.cycle_bytes);
}

}  // namespace

void print_json(const app::moe_bench_report& rep, const moe_preset& pr) {
  json::array arr;
  for (const auto& r : rep.rows) {
    json::object o = {{"tokens", r.tokens},
                      {"seconds", r.seconds},
                      {"tokens_per_second", r.tokens / r.seconds},
                      {"weight_bytes", r.weight_bytes},
                      {"rotations", r.rotations},
                      {"cycle_bytes", r.cycle_bytes},
                      {"gflops", r.flops / r.seconds / 1e9}};
    auto num = [](double v) { return std::isnan(v) ? json::value(nullptr) : json::value(v); };
    o.push_back({"weight_bandwidth_fraction", num(bandwidth_fraction(rep, r))});
    o.push_back({"cache_share_of_cycle", num(cache_share(rep, r))});
    o.push_back({"reference_seconds", num(r.reference_seconds)});
    o.push_back({"speedup", num(r.reference_seconds / r.seconds)});
    o.push_back({"dense_gflops", num(r.dense_gflops)});
    o.push_back({"fraction_of_dense", num(r.flops / r.seconds / 1e9 / r.dense_gflops)});
    o.push_back({"max_rel_diff_vs_reference", num(r.max_rel_diff)});
    o.push_back({"reference_runs", r.reference_runs});
    if (!r.reference_skipped.empty()) o.push_back({"reference_skipped", r.reference_skipped});
    arr.push_back(json::value(std::move(o)));
  }
  json::object top = {{"preset", pr.name}, {"experts", pr.E}, {"hidden", pr.H}, {"intermediate", pr.I}, {"top_k", pr.K},
                      {"shared_intermediate", pr.Is}, {"threads", rep.threads}, {"read_bandwidth_bytes_per_second", rep.bandwidth},
                      {"backend", rep.backend}, {"backend_library", rep.backend_library}, {"torch", rep.torch}, {"rows", json::value(std::move(arr))}};
  if (!rep.read_patterns.empty()) {
    json::object patterns;
    for (const auto& [name, rate] : rep.read_patterns) patterns.push_back({name, rate});
    top.push_back({"read_patterns_bytes_per_second", json::value(std::move(patterns))});
    top.push_back({"last_level_cache_bytes", static_cast<std::int64_t>(rep.last_level_cache)});
    if (!rep.bandwidth_doubt.empty()) top.push_back({"read_bandwidth_doubt", rep.bandwidth_doubt});
  }
  if (!rep.describe.empty()) top.push_back({"backend_describe", json::parse(rep.describe, "backend describe")});
  std::cout << json::dump(json::value(std::move(top)), 2) << "\n";
}

void print_table(const app::moe_bench_report& rep, const moe_preset& pr, bool reference) {
  std::cout << pr.name << ": " << pr.note << "\n  E=" << pr.E << " H=" << pr.H << " I=" << pr.I << " K=" << pr.K;
  if (pr.Is) std::cout << " shared Is=" << pr.Is;
  std::cout << "; backend " << rep.backend << " " << rep.describe << "\n  threads " << rep.threads
            << (rep.on_device ? ", device copy bandwidth (read + write) " : ", read bandwidth ") << format_rate(rep.bandwidth)
            << (reference ? ", reference: transformers eager loop in PyTorch " + rep.torch : "") << "\n";
  if (!rep.read_patterns.empty()) {
    std::cout << "  read bandwidth is the best of:";
    for (const auto& [name, rate] : rep.read_patterns) std::cout << " " << name << " " << format_rate(rate) << ";";
    std::cout << " last-level cache " << (rep.last_level_cache ? format_bytes(rep.last_level_cache) : std::string("unknown")) << "\n";
    if (!rep.bandwidth_doubt.empty()) std::cout << "  read bandwidth not trusted, so no \"of bw\": " << rep.bandwidth_doubt << "\n";
  }
  std::cout << "\n";
  std::cout << "  tokens     time ms    tokens/s  weights GB/s  of bw   GFLOP/s   torch ms  speedup  dense GF/s  of dense  rel diff\n";
  auto cell = [](double v, int w, int prec) {
    std::ostringstream s;
    if (std::isnan(v)) s << std::setw(w) << "-";
    else s << std::setw(w) << std::fixed << std::setprecision(prec) << v;
    return s.str();
  };
  // Rows whose experts, over a whole cycle of inputs, fit twice in the last-level cache may be
  // served largely by it ("*"); rows whose cycle the cache holds 5 % of or more, partly ("~"):
  // their "of bw" can then exceed 100 %.
  auto cached = [&](const app::moe_bench_row& r) { return cache_share(rep, r) > 0.5; };
  auto partly = [&](const app::moe_bench_row& r) { return !cached(r) && cache_share(rep, r) >= 0.05; };
  for (const auto& r : rep.rows)
    std::cout << std::setw(8) << r.tokens << cell(r.seconds * 1e3, 12, 3) << cell(r.tokens / r.seconds, 12, 0)
              << cell(r.weight_bytes / r.seconds / 1e9, 14, 1) << cell(100 * bandwidth_fraction(rep, r), 6, 0) << "%"
              << (cached(r) ? "*" : partly(r) ? "~" : " ") << cell(r.flops / r.seconds / 1e9, 10, 1) << cell(r.reference_seconds * 1e3, 11, 3)
              << cell(r.reference_seconds / r.seconds, 8, 2) << "x" << cell(r.dense_gflops, 11, 1)
              << cell(100 * r.flops / r.seconds / 1e9 / r.dense_gflops, 9, 0) << "%"
              << (std::isnan(r.max_rel_diff) ? std::string("         -") : cell(r.max_rel_diff, 10, 4))
              << (r.reference_runs == 1 ? "  (torch: 1 run)" : "") << "\n";
  std::cout << "  forwards cycle over inputs routed afresh (experts read per cycle):";
  for (const auto& r : rep.rows) std::cout << " T=" << r.tokens << " " << r.rotations << " (" << format_bytes(static_cast<std::uint64_t>(r.cycle_bytes)) << ");";
  std::cout << "\n";
  for (const auto& r : rep.rows)
    if (cached(r)) {
      std::cout << "  * the experts of a cycle fit twice in the last-level cache: part may be read from it\n";
      break;
    }
  double lo = 1, hi = 0;
  for (const auto& r : rep.rows)
    if (partly(r)) lo = std::min(lo, cache_share(rep, r)), hi = std::max(hi, cache_share(rep, r));
  if (hi > 0) {
    auto whole = [](double v) {
      std::ostringstream s;
      s << std::fixed << std::setprecision(0) << v;
      return s.str();
    };
    // "a-b", or "a" when they print alike.
    auto range = [&](double a, double b) { return whole(a) == whole(b) ? whole(a) : whole(a) + "-" + whole(b); };
    std::cout << "  ~ the last-level cache holds " << range(100 * lo, 100 * hi) << " % of the cycle, so \"of bw\" can read up to "
              << range(100 / (1 - lo), 100 / (1 - hi)) << " %: a cache that keeps part of a repeated stream serves that part itself\n";
  }
  for (const auto& r : rep.rows)
    if (!r.reference_skipped.empty())
      std::cout << "  T=" << r.tokens << ": no reference, " << r.reference_skipped << " (--reference-max-seconds)\n";
}

}  // namespace moereg::cli
