// SPDX-License-Identifier: Apache-2.0
// moereg.verify(): do two checkpoints hold the same tensors (app/verify.h).
#include <pybind11/stl.h>

#include "bindings.h"
#include "moereg/app/verify.h"

namespace moereg::python {

void bind_verify(py::module_& m) {
  py::class_<app::difference>(m, "Difference", "One way two checkpoints differ.")
      .def_readonly("kind", &app::difference::kind, "'missing_in_a', 'missing_in_b', 'dtype', 'shape' or 'bytes'")
      .def_readonly("name", &app::difference::name)
      .def_readonly("detail", &app::difference::detail)
      .def("__repr__", [](const app::difference& d) { return "Difference(" + d.kind + ", " + d.name + ": " + d.detail + ")"; });
  py::class_<app::verify_report>(m, "VerifyReport", "The comparison of two checkpoints; true when they are equal.")
      .def_readonly("equal", &app::verify_report::equal)
      .def_readonly("compared", &app::verify_report::compared, "Tensors (or expert pieces) compared.")
      .def_readonly("bytes_compared", &app::verify_report::bytes_compared)
      .def_readonly("how", &app::verify_report::how, "'by tensor name' or 'through layouts A and B (family F)'")
      .def_readonly("differences", &app::verify_report::differences)
      .def("__bool__", [](const app::verify_report& r) { return r.equal; })
      .def("__repr__", [](const app::verify_report& r) {
        return std::string("VerifyReport(") + (r.equal ? "equal" : std::to_string(r.differences.size()) + " differences") + ", " +
               std::to_string(r.compared) + " compared " + r.how + ")";
      });
  m.def(
      "verify",
      [](const py::object& a, const py::object& b, const py::object& plugin_path) {
        app::verify_request r{path_string(a), path_string(b), path_list(plugin_path)};
        app::result<app::verify_report> out = [&] {
          py::gil_scoped_release unlocked;
          return app::verify(r);
        }();
        return unwrap(std::move(out));
      },
      py::arg("a"), py::arg("b"), py::kw_only(), py::arg("plugin_path") = py::none(),
      "Compare two checkpoints tensor by tensor (names, dtypes, shapes, bytes); checkpoints of one family in "
      "different layouts are compared through their layouts. Different checkpoints give a report with "
      "equal=False; moereg.Error means one could not be read.");
}

}  // namespace moereg::python
