// SPDX-License-Identifier: Apache-2.0
// bindings.h - what the binding files share: each binds one concept of the application API
// (moereg/app/*.h) into the extension module moereg._moereg, and they turn the API's
// problems into Python exceptions the same way.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <vector>

#include "moereg/app/result.h"

namespace moereg::python {

namespace py = pybind11;

void bind_errors(py::module_& m);
void bind_checkpoint(py::module_& m);
void bind_layout_stream(py::module_& m);
void bind_convert(py::module_& m);
void bind_verify(py::module_& m);
void bind_lora(py::module_& m);
void bind_moe(py::module_& m);
void bind_experts(py::module_& m);

// Raises the exception class of the problem's kind (moereg.UsageError, InputError, Cancelled,
// InternalError), whose message is moereg's message. The GIL must be held.
[[noreturn]] void raise_problem(const app::problem& p);

// A usage problem found by the bindings themselves (an argument of the right Python type and a
// wrong value): moereg.UsageError, like the API's own, so every failure is a moereg.Error.
[[noreturn]] void raise_usage(const std::string& message);

// The value of a result, or the problem raised as above.
template <class T>
T unwrap(app::result<T>&& r) {
  if (!r.ok()) raise_problem(r.error());
  return std::move(r).value();
}

// `plugin_path` as Python callers give it: None, one path (str or os.PathLike) or a list.
std::vector<std::string> path_list(const py::object& paths);
// A path argument (str or os.PathLike) as a string; None gives "".
std::string path_string(const py::object& path);
// None gives "".
std::string optional_string(const std::optional<std::string>& s);

// The numpy dtype that holds a moereg dtype ("BF16" -> uint16, "F8_E4M3" -> uint8, a GGUF
// block type -> uint8 over its bytes) and its item size.
py::dtype numpy_dtype(const std::string& moereg_dtype);

// A numpy array that owns `values` (moved in, no copy), of this shape.
template <class T>
py::array_t<T> owned_array(std::vector<T>&& values, std::vector<py::ssize_t> shape) {
  auto* held = new std::vector<T>(std::move(values));
  py::capsule owner(held, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, held->data(), owner);
}

}  // namespace moereg::python
