// SPDX-License-Identifier: Apache-2.0
// job_options.h - the options a conversion job takes from Python, shared by moereg.convert()
// and moereg.lora.merge(): the keyword arguments those Python functions forward as a dict.
#pragma once

#include "bindings.h"
#include "moereg/app/convert.h"

namespace moereg::python {

// Fills r's job fields from `options` (from_layout, family, plugin_path, threads, shard_size,
// experts, dtype, dry_run, resume, kernel_copy); None leaves a default. "progress" is left to
// the caller. An unknown key is a TypeError, as an unknown keyword argument would be.
void apply_job_options(const py::dict& options, app::convert_request& r);

}  // namespace moereg::python
