// SPDX-License-Identifier: Apache-2.0
// moereg.moe_run(): the MoE block of one decoder layer of a checkpoint on numpy inputs
// (app/moe.h), with the family's routing, on the backend chosen.
#include <pybind11/stl.h>

#include <map>

#include "bindings.h"
#include "moereg/app/moe.h"

namespace moereg::python {

namespace {

// What Python keeps of a run: the arrays own the result's vectors (moved, not copied).
struct moe_result {
  app::moe_run_result r;
  py::object output, router_logits, topk_ids, topk_weights;
};

}  // namespace

void bind_moe(py::module_& m) {
  py::class_<moe_result>(m, "MoeResult", "One run of an MoE block: its output and routing, and which backend ran and why.")
      .def_readonly("output", &moe_result::output, "float32 [tokens, hidden]")
      .def_readonly("router_logits", &moe_result::router_logits, "float32 [tokens, experts]")
      .def_readonly("topk_ids", &moe_result::topk_ids, "int64 [tokens, top_k]")
      .def_readonly("topk_weights", &moe_result::topk_weights, "float32 [tokens, top_k]")
      .def_property_readonly("backend", [](const moe_result& x) { return x.r.backend; })
      .def_property_readonly("why", [](const moe_result& x) { return x.r.why; }, "Why this backend ran (auto's choice, a fallback).")
      .def_property_readonly("describe", [](const moe_result& x) { return x.r.describe; },
                             "The backend's own account of its kernels and any copy it made (JSON text).")
      .def_property_readonly("family", [](const moe_result& x) { return x.r.family; })
      .def_property_readonly("layout", [](const moe_result& x) { return x.r.layout; })
      .def_property_readonly("layer", [](const moe_result& x) { return x.r.layer; })
      .def_property_readonly("layer_describe", [](const moe_result& x) { return x.r.layer_describe; })
      .def_property_readonly("packed_bytes", [](const moe_result& x) { return x.r.packed_bytes; })
      .def_property_readonly("load_ms", [](const moe_result& x) { return x.r.load_ms; })
      .def_property_readonly("create_ms", [](const moe_result& x) { return x.r.create_ms; })
      .def_property_readonly("forward_ms", [](const moe_result& x) { return x.r.forward_ms; })
      .def("__repr__", [](const moe_result& x) {
        return "<moereg.MoeResult layer " + std::to_string(x.r.layer) + " on " + x.r.backend + ", " + std::to_string(x.r.tokens) +
               " tokens>";
      });

  m.def(
      "moe_run",
      [](const py::object& checkpoint, int layer, const py::array& input, const std::string& backend, int threads,
         const std::map<std::string, std::string>& backend_options, const std::optional<std::string>& family,
         const std::optional<std::string>& layout, const py::object& plugin_path) {
        // bf16 comes as the uint16 bits (as Checkpoint.tensor gives it); anything else as float32.
        const bool bf16 = input.dtype().is(py::dtype::of<std::uint16_t>());
        // Integers were cast to float32 without a word: an int array is not activations.
        if (!bf16 && input.dtype().kind() != 'f')
          raise_usage("moe_run: input is " + py::str(input.dtype()).cast<std::string>() +
                      ", expected float32 (float16/float64 are cast to it) or uint16 holding bf16 bits");
        py::array x = bf16 ? py::array(py::array_t<std::uint16_t, py::array::c_style>::ensure(input))
                           : py::array(py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(input));
        if (!x) throw py::type_error("moe_run: input must be a numpy array of float32 (or of uint16 holding bf16 bits)");
        if (x.ndim() != 2) raise_usage("moe_run: input must be [tokens, hidden], not " + std::to_string(x.ndim()) + "-D");
        app::moe_run_request r;
        r.checkpoint = path_string(checkpoint);
        r.family = optional_string(family);
        r.layout = optional_string(layout);
        r.layer = layer;
        r.input = {x.data(), bf16 ? "BF16" : "F32", x.shape(0), x.shape(1), "input"};
        r.backend = backend;
        r.threads = threads;
        r.backend_options.assign(backend_options.begin(), backend_options.end());
        r.plugin_paths = path_list(plugin_path);
        app::result<app::moe_run_result> out = [&] {
          py::gil_scoped_release unlocked;
          return app::run_moe(r);
        }();
        moe_result res{unwrap(std::move(out)), {}, {}, {}, {}};
        const py::ssize_t T = res.r.tokens, H = res.r.hidden, E = res.r.experts, K = res.r.top_k;
        res.output = owned_array(std::move(res.r.output), {T, H});
        res.router_logits = owned_array(std::move(res.r.router_logits), {T, E});
        res.topk_ids = owned_array(std::move(res.r.topk_ids), {T, K});
        res.topk_weights = owned_array(std::move(res.r.topk_weights), {T, K});
        return res;
      },
      py::arg("checkpoint"), py::arg("layer"), py::arg("input"), py::kw_only(), py::arg("backend") = "auto",
      py::arg("threads") = 0, py::arg("backend_options") = std::map<std::string, std::string>{},
      py::arg("family") = py::none(), py::arg("layout") = py::none(), py::arg("plugin_path") = py::none(),
      "Run the MoE block of decoder `layer` of a checkpoint, in whatever layout it is stored, with its family's "
      "routing, on `backend` ('cpu', 'cuda', another installed backend, or 'auto'). `input` is [tokens, hidden] "
      "float32 (other float arrays are converted), or uint16 holding bf16 bits. backend_options are the "
      "backend's tuning options (docs/backends.md).");
}

}  // namespace moereg::python
