// SPDX-License-Identifier: Apache-2.0
// moereg's problems as Python exceptions: one class per error_kind under moereg.Error, each
// also a subclass of the built-in exception a Python caller would catch for it.
#include <pybind11/stl.h>

#include "bindings.h"

namespace moereg::python {

namespace {

// Created once when the module loads and kept for the life of the interpreter.
PyObject* error_base = nullptr;
PyObject* kind_types[4] = {};

// `kind` and `signal` are class attributes too, so an exception raised by Python code
// (`raise moereg.UsageError("...")`) has them as well as one made by raise_problem.
PyObject* new_exception(py::module_& m, const char* name, const char* doc, py::tuple bases, const char* kind) {
  const std::string qualified = std::string("moereg.") + name;
  PyObject* t = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases.ptr(), nullptr);
  if (!t) throw py::error_already_set();
  py::handle h(t);
  h.attr("kind") = kind;
  h.attr("signal") = 0;
  m.add_object(name, h);  // the module holds a reference too
  return t;
}

}  // namespace

void bind_errors(py::module_& m) {
  error_base = new_exception(m, "Error",
                             "A problem moereg reports. str(e) is moereg's message (it names the file, the key or line, "
                             "and what was expected); e.kind is 'usage', 'input', 'cancelled' or 'internal'.",
                             py::make_tuple(py::handle(PyExc_Exception)), "internal");
  py::handle base(error_base);
  kind_types[static_cast<int>(app::error_kind::usage)] =
      new_exception(m, "UsageError", "The request itself is wrong: a missing argument, a value out of range.",
                    py::make_tuple(base, py::handle(PyExc_ValueError)), "usage");
  kind_types[static_cast<int>(app::error_kind::input)] = new_exception(
      m, "InputError", "Bad input or a failed check: a missing or damaged file, an unknown family or layout, a refused plugin.",
      py::make_tuple(base), "input");
  kind_types[static_cast<int>(app::error_kind::cancelled)] = new_exception(
      m, "Cancelled", "The job was stopped (a signal or a cancel request); the message says what was kept.", py::make_tuple(base),
      "cancelled");
  kind_types[static_cast<int>(app::error_kind::internal)] =
      new_exception(m, "InternalError", "A bug in moereg: please report it with the message.",
                    py::make_tuple(base, py::handle(PyExc_RuntimeError)), "internal");
}

void raise_problem(const app::problem& p) {
  PyObject* type = kind_types[static_cast<int>(p.kind)];
  if (!type) type = error_base;
  py::object exc = py::reinterpret_borrow<py::object>(type)(p.message);
  exc.attr("kind") = app::to_string(p.kind);
  exc.attr("signal") = p.signal;
  PyErr_SetObject(type, exc.ptr());
  throw py::error_already_set();
}

void raise_usage(const std::string& message) { raise_problem({app::error_kind::usage, message, 0}); }

std::string path_string(const py::object& path) {
  if (path.is_none()) return {};
  py::object fs = py::module_::import("os").attr("fspath")(path);
  if (!py::isinstance<py::str>(fs)) throw py::type_error("a path must be str or os.PathLike of str, not bytes");
  return fs.cast<std::string>();
}

std::vector<std::string> path_list(const py::object& paths) {
  std::vector<std::string> out;
  if (paths.is_none()) return out;
  if (py::isinstance<py::str>(paths) || py::hasattr(paths, "__fspath__")) return {path_string(paths)};
  for (py::handle p : paths) out.push_back(path_string(py::reinterpret_borrow<py::object>(p)));
  return out;
}

std::string optional_string(const std::optional<std::string>& s) { return s ? *s : std::string(); }

}  // namespace moereg::python
