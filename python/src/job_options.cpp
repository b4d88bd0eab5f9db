// SPDX-License-Identifier: Apache-2.0
#include "job_options.h"

#include <pybind11/stl.h>

namespace moereg::python {

namespace {

// The option's value as T, or moereg.UsageError naming the option and what it takes (pybind's
// own cast error says "Unable to cast Python instance to C++ type").
template <class T>
T option(const std::string& name, py::handle value, const char* expected) {
  try {
    return value.cast<T>();
  } catch (const py::cast_error&) {
    raise_usage(name + "=" + py::repr(value).cast<std::string>() + ": expected " + expected);
  }
}

}  // namespace

void apply_job_options(const py::dict& options, app::convert_request& r) {
  for (auto [key, value] : options) {
    const std::string k = key.cast<std::string>();
    if (value.is_none() || k == "progress") continue;
    if (k == "from_layout") r.from = option<std::string>(k, value, "a layout name");
    else if (k == "family") r.family = option<std::string>(k, value, "a family name");
    else if (k == "plugin_path") r.plugin_paths = path_list(py::reinterpret_borrow<py::object>(value));
    else if (k == "threads") r.threads = option<int>(k, value, "an int, 0 (every core) to 4096");
    else if (k == "shard_size") r.shard_size = option<std::uint64_t>(k, value, "a size in bytes, an int >= 0");
    else if (k == "experts")
      r.experts = option<std::pair<std::int64_t, std::int64_t>>(k, value, "a pair (first, last) of ints, first < last");
    else if (k == "dtype") {
      if (option<std::string>(k, value, "'bf16' or None") != "bf16")
        raise_usage("dtype=" + py::repr(value).cast<std::string>() + ": expected 'bf16' (dequantize quantized weights) or None");
      r.to_bf16 = true;
    } else if (k == "dry_run") r.dry_run = option<bool>(k, value, "True or False");
    else if (k == "resume") r.resume = option<bool>(k, value, "True or False");
    else if (k == "kernel_copy") r.kernel_copy = option<bool>(k, value, "True or False");
    else throw py::type_error("unexpected option '" + k + "'");
  }
}

}  // namespace moereg::python
