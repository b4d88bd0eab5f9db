// SPDX-License-Identifier: Apache-2.0
#include <filesystem>

#include "convert_job.h"
#include "guard.h"
#include "moereg/app/lora.h"
#include "moereg/base/log.h"
#include "moereg/lora/lora_adapter.h"
#include "moereg/lora/lora_merge.h"

namespace fs = std::filesystem;

namespace moereg::app {

convert_report run_lora_merge(const lora_merge_request& r, const job_partition* part) {
  if (r.adapter.empty()) throw usage_error("merge_lora: no adapter directory given");
  if (r.rounding != "peft" && r.rounding != "single")
    throw usage_error("--rounding '" + r.rounding + "': expected peft or single");
  const lora_rounding mode = r.rounding == "peft" ? lora_rounding::peft : lora_rounding::single;
  if (r.job.source.empty()) throw usage_error("merge_lora: no base checkpoint given");
  std::unique_ptr<lora_adapter> adapter;
  auto edit = [&](model_session& s, conversion_plan& plan, plan_edit_record& record) {
    lora_read_options ro;
    ro.peft_version = r.peft_version;
    if (const json::value* a = s.ckpt->config().find("architectures");
        a && a->is_array() && !a->as_array().empty() && a->as_array()[0].is_string())
      ro.base_architecture = a->as_array()[0].as_string();
    ro.base = plan.source;
    adapter = std::make_unique<lora_adapter>(read_lora_adapter(r.adapter, s.spec, s.dims, ro));
    attach_lora_merge(plan, *adapter, mode);
    spdlog::info("{}: {} form, {} expert pairs and {} other pairs merged ({} rounding)", r.adapter,
                 lora_form_name(adapter->form), adapter->expert_pair_count(), adapter->others.size(), r.rounding);
    // Its config too: a resume after lora_alpha changed merged the shards left with the new value.
    record.sources.push_back(adapter->config_path);
    record.sources.push_back(adapter->weights_path);
    std::error_code ec;
    record.options = {{"adapter", fs::weakly_canonical(r.adapter, ec).string()}, {"--rounding", r.rounding}};
    return "|lora:" + fs::weakly_canonical(r.adapter, ec).string() + "|" + r.rounding + "|" +
           std::to_string(fs::file_size(adapter->weights_path)) + "|" +
           std::to_string(fs::last_write_time(adapter->weights_path).time_since_epoch().count());
  };
  return run_conversion(r.job, edit, nullptr, part);  // to empty: the base's own layout
}

result<convert_report> merge_lora(const lora_merge_request& r) noexcept {
  return guarded([&] { return run_lora_merge(r, nullptr); });
}

}  // namespace moereg::app
