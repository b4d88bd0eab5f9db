// SPDX-License-Identifier: Apache-2.0
// moereg.convert(): a conversion job (app/convert.h) with its report, progress through a
// Python callable and ^C as a cancel that keeps what --resume needs.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "interruptible.h"
#include "job_options.h"
#include "moereg/app/convert.h"

namespace moereg::python {

void bind_convert(py::module_& m) {
  py::class_<app::convert_progress>(m, "ConvertProgress", "What a progress callback receives, about ten times a second.")
      .def_readonly("bytes", &app::convert_progress::bytes, "Output bytes written, a resume's kept shards included.")
      .def_readonly("total_bytes", &app::convert_progress::total_bytes)
      .def_readonly("tensors", &app::convert_progress::tensors)
      .def_readonly("total_tensors", &app::convert_progress::total_tensors)
      .def_readonly("seconds", &app::convert_progress::seconds, "Since the writing started.")
      .def_readonly("final", &app::convert_progress::final, "True for the last call, after every byte is written.")
      .def("__repr__", [](const app::convert_progress& p) {
        return "ConvertProgress(" + std::to_string(p.bytes) + "/" + std::to_string(p.total_bytes) + " bytes, " +
               std::to_string(p.tensors) + "/" + std::to_string(p.total_tensors) + " tensors)";
      });
  py::class_<app::planned_tensor>(m, "PlannedTensor", "One output tensor of a dry run, and where its bytes come from.")
      .def_readonly("name", &app::planned_tensor::name)
      .def_readonly("dtype", &app::planned_tensor::dtype)
      .def_property_readonly("shape", [](const app::planned_tensor& t) { return py::tuple(py::cast(t.shape)); })
      .def_readonly("origin", &app::planned_tensor::origin);
  py::class_<app::convert_report>(m, "ConvertReport", "What a conversion did (or, for a dry run, would do).")
      .def_readonly("family", &app::convert_report::family)
      .def_readonly("model_type", &app::convert_report::model_type)
      .def_readonly("from_layout", &app::convert_report::from)
      .def_readonly("to", &app::convert_report::to)
      .def_readonly("output", &app::convert_report::output)
      .def_readonly("tensors", &app::convert_report::tensors)
      .def_readonly("total_bytes", &app::convert_report::total_bytes)
      .def_readonly("shards", &app::convert_report::shards)
      .def_readonly("resumed_shards", &app::convert_report::resumed_shards)
      .def_readonly("plan_seconds", &app::convert_report::plan_seconds)
      .def_readonly("write_seconds", &app::convert_report::write_seconds)
      .def_readonly("plan", &app::convert_report::plan, "The output tensors of a dry run; empty otherwise.")
      .def("__repr__", [](const app::convert_report& r) {
        return "ConvertReport(" + r.family + ": " + r.from + " -> " + r.to + ", " + std::to_string(r.tensors) + " tensors, " +
               std::to_string(r.shards) + " shards)";
      });

  // The keyword arguments are moereg.convert()'s (python/moereg/__init__.py), forwarded as a dict.
  m.def(
      "_convert",
      [](const py::object& source, const py::object& output, const std::string& to, const py::dict& options) {
        app::convert_request r;
        r.source = path_string(source);
        r.output = path_string(output);
        r.to = to;
        apply_job_options(options, r);
        interruptible job;
        r.cancel = job.cancel_flag();
        r.on_progress = job.progress<app::convert_progress>(options.contains("progress") ? py::object(options["progress"]) : py::object(py::none()));
        return job.unwrap(job.run<app::convert_report>([&] { return app::convert(r); }));
      },
      py::arg("source"), py::arg("output"), py::arg("to"), py::arg("options"));
}

}  // namespace moereg::python
