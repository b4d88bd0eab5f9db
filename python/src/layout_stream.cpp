// SPDX-License-Identifier: Apache-2.0
// moereg.iter_tensors() underneath: a checkpoint's tensors in another layout, made one at a
// time into numpy arrays (app/layout_stream.h). The generator itself is Python
// (moereg/__init__.py); each array it yields is new and belongs to the caller.
#include <pybind11/stl.h>

#include "bindings.h"
#include "moereg/app/layout_stream.h"

namespace moereg::python {

namespace {

// pybind11 holds objects through shared_ptr<T>, not shared_ptr<const T>; nothing here mutates a stream.
using stream_ptr = std::shared_ptr<app::layout_stream>;

const app::tensor_entry& entry_at(const app::layout_stream& s, std::size_t i) {
  if (i >= s.tensors().size())
    throw py::index_error("tensor " + std::to_string(i) + " of a stream of " + std::to_string(s.tensors().size()));
  return s.tensors()[i];
}

void produce_into(const app::layout_stream& s, std::size_t i, py::array& out) {
  const app::tensor_entry& t = entry_at(s, i);
  if (!out.writeable() || !(out.flags() & py::array::c_style))
    raise_usage("produce_into: the array must be writable and C-contiguous");
  if (static_cast<std::uint64_t>(out.nbytes()) < t.bytes)
    raise_usage("produce_into: " + t.name + " needs " + std::to_string(t.bytes) + " bytes; the array holds " +
                          std::to_string(out.nbytes()));
  void* dst = out.mutable_data();
  const std::uint64_t capacity = static_cast<std::uint64_t>(out.nbytes());
  app::result<app::done> r = [&] {
    py::gil_scoped_release unlocked;
    return s.produce(i, dst, capacity);
  }();
  unwrap(std::move(r));
}

}  // namespace

void bind_layout_stream(py::module_& m) {
  py::class_<app::layout_stream, stream_ptr>(m, "LayoutStream",
                                             "A checkpoint's tensors planned in another layout of its family; made on "
                                             "request by produce(). moereg.iter_tensors() walks one.")
      .def_property_readonly("family", [](const app::layout_stream& s) { return s.family(); })
      .def_property_readonly("from_layout", [](const app::layout_stream& s) { return s.from(); },
                             "The layout the source is stored in.")
      .def_property_readonly("to", [](const app::layout_stream& s) { return s.to(); },
                             "The target layout (an alias resolved to its name).")
      .def_property_readonly("largest_bytes", [](const app::layout_stream& s) { return s.largest_bytes(); },
                             "The largest tensor's size in bytes.")
      .def("tensors", [](const app::layout_stream& s) { return s.tensors(); },
           "Every output tensor's TensorInfo, in the order convert writes them.")
      .def("__len__", [](const app::layout_stream& s) { return s.tensors().size(); })
      .def(
          "produce",
          [](const app::layout_stream& s, std::size_t i) {
            const app::tensor_entry& t = entry_at(s, i);
            std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
            py::array out(numpy_dtype(t.dtype), shape);
            produce_into(s, i, out);
            return out;
          },
          py::arg("index"), "Tensor `index` as a new numpy array (dtypes as Checkpoint.tensor gives them).")
      .def("produce_into", &produce_into, py::arg("index"), py::arg("out"),
           "Tensor `index` written into `out`, a writable C-contiguous array of at least its nbytes (its bytes; "
           "shape and dtype of `out` are not looked at): for reusing one buffer.");

  m.def(
      "open_layout_stream",
      [](const py::object& path, const std::string& layout, const std::optional<std::pair<std::int64_t, std::int64_t>>& experts,
         const std::optional<std::string>& from_layout, const std::optional<std::string>& family, const std::optional<std::string>& dtype,
         int threads, const py::object& plugin_path) {
        app::layout_stream_request r;
        r.source = path_string(path);
        r.to = layout;
        r.experts = experts;
        r.from = optional_string(from_layout);
        r.family = optional_string(family);
        if (dtype && *dtype != "bf16") raise_usage("dtype='" + *dtype + "': expected 'bf16' (dequantize quantized weights) or None");
        r.to_bf16 = dtype.has_value();
        r.threads = threads;
        r.plugin_paths = path_list(plugin_path);
        app::result<std::shared_ptr<const app::layout_stream>> opened = [&] {
          py::gil_scoped_release unlocked;
          return app::open_layout_stream(r);
        }();
        return std::const_pointer_cast<app::layout_stream>(unwrap(std::move(opened)));
      },
      py::arg("path"), py::arg("layout") = "transformers_v5", py::arg("experts") = py::none(), py::kw_only(),
      py::arg("from_layout") = py::none(), py::arg("family") = py::none(), py::arg("dtype") = py::none(),
      py::arg("threads") = 0, py::arg("plugin_path") = py::none(),
      "Plan a checkpoint's conversion to `layout` without writing it: a LayoutStream whose tensors are made on "
      "request. Errors (unknown layout, bad expert range) are raised here, before any tensor is made.");
}

}  // namespace moereg::python
