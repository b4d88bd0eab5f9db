// SPDX-License-Identifier: Apache-2.0
// moereg.ExpertsBackend: a fused-MoE backend on experts the caller holds, routed by the
// caller (app/experts.h). numpy arrays are read where they lie; moereg.transformers hands it
// torch tensors' memory through the pointer-level methods. Either way the backend keeps the
// owners of the weights alive for as long as it lives.
#include <pybind11/stl.h>

#include <map>

#include "bindings.h"
#include "moereg/app/experts.h"

namespace moereg::python {

namespace {

class experts_handle {
 public:
  experts_handle(std::shared_ptr<app::experts_backend> b, py::object owner, std::int64_t hidden, std::int64_t top_k)
      : b_(std::move(b)), owner_(std::move(owner)), hidden_(hidden), top_k_(top_k) {}

  const app::experts_backend& backend() const { return *b_; }
  std::int64_t hidden() const { return hidden_; }
  std::int64_t top_k() const { return top_k_; }

  void call(const app::experts_call& c) const {
    app::result<app::done> r = [&] {
      py::gil_scoped_release unlocked;
      return b_->forward(c);
    }();
    unwrap(std::move(r));
  }

 private:
  std::shared_ptr<app::experts_backend> b_;
  py::object owner_;  // what holds the weights' memory
  std::int64_t hidden_, top_k_;
};

std::string weight_dtype(const py::array& a) {
  if (a.dtype().is(py::dtype::of<std::uint16_t>())) return "BF16";  // bf16 bits, as moereg hands them out
  if (a.dtype().is(py::dtype::of<float>())) return "F32";
  if (a.dtype().kind() == 'f' && a.itemsize() == 2) return "F16";
  throw py::type_error("ExpertsBackend: weights must be uint16 (bf16 bits), float16 or float32, not " +
                       py::str(a.dtype()).cast<std::string>());
}

experts_handle create(const app::expert_weights& w, std::int64_t top_k, const std::string& backend, int threads,
                      const std::map<std::string, std::string>& options, const py::object& plugin_path, py::object owner) {
  app::experts_request r;
  r.weights = w;
  r.top_k = top_k;
  r.backend = backend;
  r.threads = threads;
  r.backend_options.assign(options.begin(), options.end());
  r.plugin_paths = path_list(plugin_path);
  app::result<std::shared_ptr<app::experts_backend>> made = [&] {
    py::gil_scoped_release unlocked;
    return app::create_experts_backend(r);
  }();
  return experts_handle(unwrap(std::move(made)), std::move(owner), w.hidden, top_k);
}

}  // namespace

void bind_experts(py::module_& m) {
  py::class_<experts_handle>(m, "ExpertsBackend",
                             "A fused-MoE backend (cpu, cuda, ...) on the routed experts of one layer, in transformers 5's "
                             "fused layout, with routing done by the caller.")
      .def(py::init([](const py::array& gate_up, const py::array& down, std::int64_t top_k, const std::string& backend, int threads,
                       const std::map<std::string, std::string>& backend_options, const py::object& plugin_path) {
             if (gate_up.ndim() != 3 || down.ndim() != 3)
               raise_usage("ExpertsBackend: gate_up must be [E, 2I, H] and down [E, H, I]");
             if (!(gate_up.flags() & py::array::c_style) || !(down.flags() & py::array::c_style))
               raise_usage("ExpertsBackend: the weights must be C-contiguous (they are read where they lie)");
             const std::string dt = weight_dtype(gate_up);
             if (weight_dtype(down) != dt) throw py::type_error("ExpertsBackend: gate_up and down differ in dtype");
             const std::int64_t E = gate_up.shape(0), I2 = gate_up.shape(1), H = gate_up.shape(2);
             if (I2 % 2 || down.shape(0) != E || down.shape(1) != H || down.shape(2) != I2 / 2)
               raise_usage("ExpertsBackend: gate_up [" + std::to_string(E) + ", " + std::to_string(I2) + ", " +
                                     std::to_string(H) + "] and down [" + std::to_string(down.shape(0)) + ", " +
                                     std::to_string(down.shape(1)) + ", " + std::to_string(down.shape(2)) +
                                     "] are not [E, 2I, H] and [E, H, I]");
             app::expert_weights w{gate_up.data(), down.data(), dt, E, H, I2 / 2};
             return create(w, top_k, backend, threads, backend_options, plugin_path, py::make_tuple(gate_up, down));
           }),
           py::arg("gate_up"), py::arg("down"), py::arg("top_k"), py::kw_only(), py::arg("backend") = "auto", py::arg("threads") = 0,
           py::arg("backend_options") = std::map<std::string, std::string>{}, py::arg("plugin_path") = py::none(),
           "gate_up [E, 2I, H] (gate rows first) and down [E, H, I], C-contiguous uint16 (bf16 bits), float16 or "
           "float32, read where they lie: keep them unchanged while the backend lives (it holds them).")
      .def_property_readonly("name", [](const experts_handle& h) { return h.backend().name(); })
      .def_property_readonly("why", [](const experts_handle& h) { return h.backend().why(); })
      .def_property_readonly("top_k", &experts_handle::top_k)
      .def("describe", [](const experts_handle& h) { return unwrap(h.backend().describe()); },
           "The backend's own account of its kernels and any copy it made (JSON text).")
      .def(
          "forward",
          [](const experts_handle& h, const py::array& x, const py::array& topk_ids, const py::array& topk_weights) {
            const bool bf16 = x.dtype().is(py::dtype::of<std::uint16_t>());
            py::array xs = bf16 ? py::array(py::array_t<std::uint16_t, py::array::c_style>::ensure(x))
                                : py::array(py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(x));
            auto ids = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(topk_ids);
            auto w = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(topk_weights);
            if (!xs || !ids || !w) throw py::type_error("forward: x, topk_ids and topk_weights must be numpy arrays");
            if (xs.ndim() != 2 || xs.shape(1) != h.hidden())
              raise_usage("forward: x must be [tokens, " + std::to_string(h.hidden()) + "]");
            const std::int64_t T = xs.shape(0);
            if (ids.ndim() != 2 || w.ndim() != 2 || ids.shape(0) != T || w.shape(0) != T || ids.shape(1) != h.top_k() ||
                w.shape(1) != h.top_k())
              raise_usage("forward: topk_ids and topk_weights must be [tokens, " + std::to_string(h.top_k()) + "]");
            py::array_t<float> out({T, h.hidden()});
            h.call({xs.data(), bf16 ? "BF16" : "F32", T, ids.data(), w.data(), h.top_k(), out.mutable_data()});
            return out;
          },
          py::arg("x"), py::arg("topk_ids"), py::arg("topk_weights"),
          "out[t] = sum_k topk_weights[t, k] * expert_{topk_ids[t, k]}(x[t]), float32 [tokens, hidden]. x is float32 "
          "(other floats converted) or uint16 holding bf16 bits; ids int64, weights float32 [tokens, top_k].")
      .def_static(
          "_from_pointers",
          [](std::uintptr_t gate_up, std::uintptr_t down, const std::string& dtype, std::int64_t E, std::int64_t H, std::int64_t I,
             std::int64_t top_k, const std::string& backend, int threads, const std::map<std::string, std::string>& backend_options,
             const py::object& plugin_path, py::object owner, int device) {
            app::expert_weights w{reinterpret_cast<const void*>(gate_up), reinterpret_cast<const void*>(down), dtype, E, H, I, device};
            return create(w, top_k, backend, threads, backend_options, plugin_path, std::move(owner));
          },
          py::arg("gate_up"), py::arg("down"), py::arg("dtype"), py::arg("experts"), py::arg("hidden"), py::arg("intermediate"),
          py::arg("top_k"), py::arg("backend"), py::arg("threads"), py::arg("backend_options"), py::arg("plugin_path"),
          py::arg("owner"), py::arg("device") = -1,
          "For moereg.transformers: weights by address, kept valid by `owner`; device -1 for host memory, else the "
          "CUDA device holding them (and every buffer of _forward_pointers).")
      .def(
          "_forward_pointers",
          [](const experts_handle& h, std::uintptr_t x, const std::string& x_dtype, std::int64_t tokens, std::uintptr_t ids,
             std::uintptr_t weights, std::uintptr_t out) {
            h.call({reinterpret_cast<const void*>(x), x_dtype, tokens, reinterpret_cast<const std::int64_t*>(ids),
                    reinterpret_cast<const float*>(weights), h.top_k(), reinterpret_cast<float*>(out)});
          },
          "For moereg.transformers: contiguous buffers by address, in the weights' memory (x F32/BF16, ids int64, weights "
          "and out float32).");
}

}  // namespace moereg::python
