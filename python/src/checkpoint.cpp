// SPDX-License-Identifier: Apache-2.0
// moereg.open(): a checkpoint's tensors as read-only numpy arrays viewing the mapped files
// (app/mapped.h). Each array's base is the Checkpoint, which owns the mapping, so the
// mapping lives as long as any array of it does.
#include <pybind11/stl.h>

#include <unordered_map>

#include "bindings.h"
#include "moereg/app/mapped.h"

namespace moereg::python {

namespace {

class checkpoint_handle {
 public:
  explicit checkpoint_handle(std::shared_ptr<const app::mapped_checkpoint> m) : m_(std::move(m)) {
    for (std::size_t i = 0; i < info().tensors.size(); ++i) index_.emplace(info().tensors[i].name, i);
  }
  const app::model_info& info() const { return m_->info(); }
  const app::tensor_entry& entry(const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end()) throw py::key_error("no tensor '" + name + "' in " + info().path);
    return info().tensors[it->second];
  }
  const std::byte* data(const std::string& name) const { return m_->data(name); }

 private:
  std::shared_ptr<const app::mapped_checkpoint> m_;
  std::unordered_map<std::string, std::size_t> index_;
};

py::object none_if_empty(const std::string& s) { return s.empty() ? py::object(py::none()) : py::object(py::str(s)); }

py::array tensor_view(py::object self, const std::string& name) {
  const checkpoint_handle& c = self.cast<const checkpoint_handle&>();
  const app::tensor_entry& t = c.entry(name);
  py::dtype dt = numpy_dtype(t.dtype);
  std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
  py::ssize_t count = 1;
  for (auto d : shape) count *= d;
  if (static_cast<std::uint64_t>(count * dt.itemsize()) != t.bytes)
    throw std::runtime_error("moereg: tensor '" + name + "' holds " + std::to_string(t.bytes) + " bytes, not " +
                             std::to_string(count * dt.itemsize()) + " as its dtype and shape say (a bug: please report it)");
  // No copy: the array points into the map; `self` is its base and keeps the map alive.
  py::array a(dt, shape, {}, c.data(name), self);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

}  // namespace

void bind_checkpoint(py::module_& m) {
  py::class_<app::tensor_entry>(m, "TensorInfo", "A tensor's name, dtype (safetensors' spelling, or a GGUF block type), shape and size.")
      .def_readonly("name", &app::tensor_entry::name)
      .def_readonly("dtype", &app::tensor_entry::dtype, "'BF16', 'F32', 'F8_E4M3', ... or a GGUF block type such as 'Q4_K'")
      .def_property_readonly("shape", [](const app::tensor_entry& t) { return py::tuple(py::cast(t.shape)); },
                             "The shape in PyTorch order; a GGUF block type's innermost dimension counts bytes.")
      .def_readonly("nbytes", &app::tensor_entry::bytes)
      .def("__repr__", [](const app::tensor_entry& t) {
        return "TensorInfo(" + py::repr(py::str(t.name)).cast<std::string>() + ", " + t.dtype + ", " +
               py::repr(py::tuple(py::cast(t.shape))).cast<std::string>() + ")";
      });

  py::class_<checkpoint_handle>(m, "Checkpoint",
                                "A checkpoint opened by moereg.open(): its family, layout and config, and its tensors as "
                                "read-only numpy arrays viewing the mapped files.")
      .def_property_readonly("path", [](const checkpoint_handle& c) { return c.info().path; })
      .def_property_readonly("family", [](const checkpoint_handle& c) { return none_if_empty(c.info().family); },
                             "The family plugin that claims it ('qwen3_moe'); None when opened with identify=False.")
      .def_property_readonly("model_type", [](const checkpoint_handle& c) { return none_if_empty(c.info().model_type); })
      .def_property_readonly("layout", [](const checkpoint_handle& c) { return none_if_empty(c.info().layout); },
                             "The layout it is stored in ('hf', 'transformers_v5', ...).")
      .def_property_readonly("layouts", [](const checkpoint_handle& c) { return c.info().layouts; },
                             "Every layout of its family: what it converts to.")
      .def_property_readonly("config",
                             [](const checkpoint_handle& c) -> py::object {
                               if (c.info().config_json.empty()) return py::none();
                               return py::module_::import("json").attr("loads")(c.info().config_json);
                             },
                             "The configuration (config.json, or made from params.json or GGUF metadata) as a dict.")
      .def_property_readonly("dims", [](const checkpoint_handle& c) {
        const auto& i = c.info();
        py::dict d;
        if (i.family.empty()) return d;
        d["layers"] = i.layers;
        d["experts"] = i.experts;
        d["experts_per_token"] = i.experts_per_token;
        d["hidden"] = i.hidden;
        d["intermediate"] = i.intermediate;
        return d;
      }, "The family's reading of the config: MoE layers, experts, experts_per_token, hidden, intermediate.")
      .def_property_readonly("total_bytes", [](const checkpoint_handle& c) { return c.info().total_bytes; })
      .def("names", [](const checkpoint_handle& c) {
        std::vector<std::string> n;
        for (const auto& t : c.info().tensors) n.push_back(t.name);
        return n;
      }, "Every tensor's name, sorted.")
      .def("info", [](const checkpoint_handle& c, const std::string& name) { return c.entry(name); }, py::arg("name"),
           "The tensor's TensorInfo; KeyError when there is none of that name.")
      .def("tensors", [](const checkpoint_handle& c) { return c.info().tensors; }, "Every tensor's TensorInfo, sorted by name.")
      .def("tensor", &tensor_view, py::arg("name"),
           "The tensor as a read-only numpy array viewing the mapped file: no copy, and its base keeps the "
           "checkpoint's files mapped. BF16 is a uint16 array of the bits and F8 a uint8 one (moereg.to_torch "
           "gives the torch dtype, still without a copy); a GGUF block type is uint8 over its bytes.")
      .def("__contains__", [](const checkpoint_handle& c, const std::string& name) { return c.data(name) != nullptr; })
      .def("__len__", [](const checkpoint_handle& c) { return c.info().tensors.size(); })
      .def("__repr__", [](const checkpoint_handle& c) {
        const auto& i = c.info();
        return "<moereg.Checkpoint " + i.path + (i.family.empty() ? "" : " family=" + i.family + " layout=" + i.layout) + ", " +
               std::to_string(i.tensors.size()) + " tensors>";
      });

  m.def(
      "open",
      [](const py::object& path, const std::optional<std::string>& family, const std::optional<std::string>& layout,
         const py::object& plugin_path, bool identify) {
        app::map_request r;
        r.path = path_string(path);
        r.family = optional_string(family);
        r.layout = optional_string(layout);
        r.plugin_paths = path_list(plugin_path);
        r.identify = identify;
        app::result<std::shared_ptr<const app::mapped_checkpoint>> opened = [&] {
          py::gil_scoped_release unlocked;
          return app::map_checkpoint(r);
        }();
        return checkpoint_handle(unwrap(std::move(opened)));
      },
      py::arg("path"), py::arg("family") = py::none(), py::arg("layout") = py::none(), py::arg("plugin_path") = py::none(),
      py::arg("identify") = true,
      "Open a checkpoint (a directory, a .safetensors file or a GGUF model): maps its files, checks every header, "
      "reads no tensor data. identify=False opens any safetensors or GGUF file without looking for a family.");
}

}  // namespace moereg::python
