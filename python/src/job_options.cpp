// SPDX-License-Identifier: Apache-2.0
#include "job_options.h"

#include <pybind11/stl.h>

namespace moereg::python {

void apply_job_options(const py::dict& options, app::convert_request& r) {
  for (auto [key, value] : options) {
    const std::string k = key.cast<std::string>();
    if (value.is_none() || k == "progress") continue;
    if (k == "from_layout") r.from = value.cast<std::string>();
    else if (k == "family") r.family = value.cast<std::string>();
    else if (k == "plugin_path") r.plugin_paths = path_list(py::reinterpret_borrow<py::object>(value));
    else if (k == "threads") r.threads = value.cast<int>();
    else if (k == "shard_size") r.shard_size = value.cast<std::uint64_t>();
    else if (k == "experts") r.experts = value.cast<std::pair<std::int64_t, std::int64_t>>();
    else if (k == "dtype") {
      if (value.cast<std::string>() != "bf16") throw py::value_error("dtype: only 'bf16' (dequantize quantized weights) or None");
      r.to_bf16 = true;
    } else if (k == "dry_run") r.dry_run = value.cast<bool>();
    else if (k == "resume") r.resume = value.cast<bool>();
    else if (k == "kernel_copy") r.kernel_copy = value.cast<bool>();
    else throw py::type_error("unexpected option '" + k + "'");
  }
}

}  // namespace moereg::python
