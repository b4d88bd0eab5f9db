// SPDX-License-Identifier: Apache-2.0
// moereg.lora: expert LoRA adapters (app/lora.h): describe, rewrite in another form, merge.
// The keyword APIs are in python/moereg/lora.py.
#include <pybind11/stl.h>

#include "bindings.h"
#include "interruptible.h"
#include "job_options.h"
#include "moereg/app/lora.h"

namespace moereg::python {

namespace {

app::lora_open_request open_request(const py::object& adapter, const py::object& base, const std::optional<std::string>& peft_version,
                                    const py::object& plugin_path) {
  return {path_string(adapter), path_string(base), optional_string(peft_version), path_list(plugin_path)};
}

}  // namespace

void bind_lora(py::module_& m) {
  py::class_<app::lora_expert_target>(m, "LoraExpertTarget", "The routed-expert pairs of one piece with one rank and alpha.")
      .def_readonly("piece", &app::lora_expert_target::piece)
      .def_readonly("rank", &app::lora_expert_target::rank)
      .def_readonly("alpha", &app::lora_expert_target::alpha)
      .def_readonly("scale", &app::lora_expert_target::scale)
      .def_readonly("dtype", &app::lora_expert_target::dtype)
      .def_readonly("layers", &app::lora_expert_target::layers)
      .def_readonly("pairs", &app::lora_expert_target::pairs);
  py::class_<app::lora_module>(m, "LoraModule", "A LoRA pair outside the routed experts.")
      .def_readonly("module", &app::lora_module::module)
      .def_readonly("canonical", &app::lora_module::canonical)
      .def_readonly("rank", &app::lora_module::rank)
      .def_readonly("alpha", &app::lora_module::alpha)
      .def_readonly("scale", &app::lora_module::scale)
      .def_readonly("dtype", &app::lora_module::dtype);
  py::class_<app::lora_info>(m, "LoraInfo", "What moereg.lora.inspect() finds in an adapter.")
      .def_readonly("adapter", &app::lora_info::adapter)
      .def_readonly("base", &app::lora_info::base)
      .def_readonly("family", &app::lora_info::family)
      .def_readonly("dims", &app::lora_info::dims)
      .def_readonly("form", &app::lora_info::form, "'peft_param_wrapper', 'peft_per_expert' or 'nemo_grouped'")
      .def_readonly("orientation", &app::lora_info::orientation)
      .def_readonly("orientation_reason", &app::lora_info::orientation_reason)
      .def_readonly("rank", &app::lora_info::rank)
      .def_readonly("alpha", &app::lora_info::alpha)
      .def_readonly("rslora", &app::lora_info::rslora)
      .def_readonly("gate_up_share_A", &app::lora_info::gate_up_share_A)
      .def_readonly("expert_layers", &app::lora_info::expert_layers)
      .def_readonly("expert_pairs", &app::lora_info::expert_pairs)
      .def_readonly("experts", &app::lora_info::experts)
      .def_readonly("others", &app::lora_info::others);
  py::class_<app::lora_convert_report>(m, "LoraConvertReport", "What moereg.lora.convert() wrote.")
      .def_readonly("adapter", &app::lora_convert_report::adapter)
      .def_readonly("from_form", &app::lora_convert_report::from)
      .def_readonly("to", &app::lora_convert_report::to)
      .def_readonly("output", &app::lora_convert_report::output)
      .def_readonly("tensors", &app::lora_convert_report::tensors)
      .def_readonly("bytes", &app::lora_convert_report::bytes)
      .def_readonly("notes", &app::lora_convert_report::notes);

  m.def(
      "_lora_inspect",
      [](const py::object& adapter, const py::object& base, const std::optional<std::string>& peft_version, const py::object& plugin_path) {
        app::lora_open_request r = open_request(adapter, base, peft_version, plugin_path);
        app::result<app::lora_info> out = [&] {
          py::gil_scoped_release unlocked;
          return app::inspect_lora(r);
        }();
        return unwrap(std::move(out));
      },
      py::arg("adapter"), py::arg("base"), py::arg("peft_version"), py::arg("plugin_path"));
  m.def(
      "_lora_convert",
      [](const py::object& adapter, const py::object& output, const std::string& to, const py::object& base,
         const std::optional<std::string>& peft_version, const std::optional<std::pair<std::int64_t, std::int64_t>>& experts,
         const py::object& plugin_path) {
        app::lora_convert_request r{open_request(adapter, base, peft_version, plugin_path), path_string(output), to, experts};
        app::result<app::lora_convert_report> out = [&] {
          py::gil_scoped_release unlocked;
          return app::convert_lora(r);
        }();
        return unwrap(std::move(out));
      },
      py::arg("adapter"), py::arg("output"), py::arg("to"), py::arg("base"), py::arg("peft_version"), py::arg("experts"),
      py::arg("plugin_path"));
  m.def(
      "_lora_merge",
      [](const py::object& base, const py::object& adapter, const py::object& output, const std::optional<std::string>& to,
         const std::string& rounding, const std::optional<std::string>& peft_version, const py::dict& options) {
        app::lora_merge_request r;
        r.job.source = path_string(base);
        r.job.output = path_string(output);
        r.job.to = optional_string(to);
        apply_job_options(options, r.job);
        r.adapter = path_string(adapter);
        r.rounding = rounding;
        r.peft_version = optional_string(peft_version);
        interruptible job;
        r.job.cancel = job.cancel_flag();
        r.job.on_progress = job.progress<app::convert_progress>(options.contains("progress") ? py::object(options["progress"]) : py::object(py::none()));
        return job.unwrap(job.run<app::convert_report>([&] { return app::merge_lora(r); }));
      },
      py::arg("base"), py::arg("adapter"), py::arg("output"), py::arg("to"), py::arg("rounding"), py::arg("peft_version"),
      py::arg("options"));
}

}  // namespace moereg::python
