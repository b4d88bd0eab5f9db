// SPDX-License-Identifier: Apache-2.0
#include "convert_output.h"

#include <iostream>

#include "api_result.h"
#include "moereg/app/lora.h"
#include "moereg/base/cancel.h"
#include "moereg/base/json.h"
#include "moereg/base/printable.h"
#include "moereg/base/units.h"
#include "moereg/checkpoint/summary.h"
#include "moereg/tensor/dtype.h"
#include "progress.h"

namespace moereg::cli {

namespace {

json::value shape_json(const std::vector<std::int64_t>& shape) {
  json::array a;
  for (auto d : shape) a.emplace_back(json::value(d));
  return json::value(std::move(a));
}

void print_plan(const app::convert_report& r, const std::string& source, bool as_json) {
  if (as_json) {
    json::array outs;
    for (const auto& t : r.plan)
      outs.emplace_back(json::value(json::object{{"name", json::value(t.name)}, {"dtype", json::value(t.dtype)},
                                                 {"shape", shape_json(t.shape)}, {"from", json::value(t.origin)}}));
    std::cout << json::dump(json::value(json::object{{"family", json::value(r.family)}, {"model_type", json::value(r.model_type)},
                                                      {"from", json::value(r.from)}, {"to", json::value(r.to)},
                                                      {"total_bytes", json::value(r.total_bytes)},
                                                      {"tensors", json::value(std::move(outs))}}),
                            2)
              << "\n";
    return;
  }
  std::cout << "plan: " << printable(source) << " (" << r.family << ", " << r.from << ") -> layout " << r.to << ": "
            << r.tensors << " tensors, " << human_bytes(r.total_bytes) << "\n";
  for (const auto& t : r.plan)
    std::cout << "  " << printable(t.name) << "  " << t.dtype << " " << shape_string(t.shape) << "  <- "
              << printable_message(t.origin) << "\n";
  std::cout << "no problems found; nothing written (--dry-run)\n";
}

void print_written(const app::convert_report& r, const std::string& source, bool as_json) {
  const double rate = r.write_seconds > 0 ? static_cast<double>(r.total_bytes) / r.write_seconds : 0;
  if (as_json) {
    std::cout << json::dump(json::value(json::object{{"family", json::value(r.family)}, {"model_type", json::value(r.model_type)},
                                                      {"from", json::value(r.from)}, {"to", json::value(r.to)},
                                                      {"output", json::value(r.output)}, {"tensors", json::value(r.tensors)},
                                                      {"total_bytes", json::value(r.total_bytes)}, {"shards", json::value(r.shards)},
                                                      {"plan_seconds", json::value(r.plan_seconds)},
                                                      {"write_seconds", json::value(r.write_seconds)},
                                                      {"bytes_per_second", json::value(rate)}}),
                            2)
              << "\n";
    return;
  }
  std::cout << "converted " << printable(source) << " (" << r.family << ", " << r.from << ") -> " << printable(r.output) << " ("
            << r.to << "): " << r.tensors << " tensors, " << human_bytes(r.total_bytes) << " in " << r.shards << " file(s); "
            << format_duration(r.write_seconds) << ", " << format_rate(rate) << "\n";
}

}  // namespace

app::lora_merge_request merge_request(const app::convert_request& job, const lora_merge_options& lora) {
  app::lora_merge_request m;
  m.job = job;
  m.adapter = lora.adapter;
  m.rounding = lora.rounding;
  m.peft_version = lora.peft_version;
  return m;
}

int run_and_print(app::convert_request job, const global_options& globals, const lora_merge_options* lora) {
  progress_line line(lora ? "merge" : "convert");
  if (stderr_is_tty()) job.on_progress = [&line](const app::convert_progress& p) { line(p); };
  cancel_on_signals on_signals;  // the job stops at its next write and keeps what --resume needs
  app::convert_report r;
  if (lora) {
    r = take(app::merge_lora(merge_request(job, *lora)));
  } else {
    r = take(app::convert(job));
  }
  print_convert_report(r, job, globals);
  return 0;
}

void print_convert_report(const app::convert_report& r, const app::convert_request& job, const global_options& globals) {
  if (job.dry_run)
    print_plan(r, job.source, globals.json);
  else
    print_written(r, job.source, globals.json);
}

}  // namespace moereg::cli
