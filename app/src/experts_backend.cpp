// SPDX-License-Identifier: Apache-2.0
#include <mutex>

#include "backend_choice.h"
#include "guard.h"
#include "moereg/app/experts.h"
#include "moereg/base/parallel.h"
#include "moereg/tensor/tensor_view.h"
#include "session.h"

namespace moereg::app {

// The registry owns the loaded backend library, so it outlives the backend made from it.
struct experts_backend::impl {
  std::unique_ptr<plugin_registry> registry;
  std::unique_ptr<backend_instance> backend;
  expert_weights weights;
  std::int64_t top_k = 0;
  std::string name;
  std::mutex call;  // the ABI allows one forward at a time per handle
};

experts_backend::experts_backend(std::unique_ptr<impl> state) : impl_(std::move(state)) {}
experts_backend::~experts_backend() {
  impl_->backend.reset();  // destroy the handle before its library goes with the registry
}

const std::string& experts_backend::name() const noexcept { return impl_->name; }
const std::string& experts_backend::why() const noexcept { return impl_->backend->why(); }

result<std::string> experts_backend::describe() const noexcept {
  return guarded([&] { return impl_->backend->describe(); });
}

namespace {

dtype weight_dtype(const std::string& name) {
  if (name == "BF16") return dtype::BF16;
  if (name == "F16") return dtype::F16;
  if (name == "F32") return dtype::F32;
  throw usage_error("experts: weights of dtype '" + name + "'; expected BF16, F16 or F32");
}

}  // namespace

result<done> experts_backend::forward(const experts_call& c) const noexcept {
  return guarded([&] {
    const expert_weights& w = impl_->weights;
    if (c.tokens < 0) throw usage_error("experts forward: tokens must be 0 or more");
    if (c.top_k != impl_->top_k)
      throw usage_error("experts forward: top_k " + std::to_string(c.top_k) + ", but the backend was created for " +
                        std::to_string(impl_->top_k));
    if (c.x_dtype != "F32" && c.x_dtype != "BF16") throw usage_error("experts forward: x is " + c.x_dtype + ", expected F32 or BF16");
    if (c.tokens > 0 && (!c.x || !c.topk_ids || !c.topk_weights || !c.out)) throw usage_error("experts forward: a buffer is missing");
    const bool on_device = w.device >= 0;
    for (std::int64_t i = 0; !on_device && i < c.tokens * c.top_k; ++i)
      if (c.topk_ids[i] < 0 || c.topk_ids[i] >= w.experts)
        throw usage_error("experts forward: expert id " + std::to_string(c.topk_ids[i]) + " at token " + std::to_string(i / c.top_k) +
                          " is outside [0, " + std::to_string(w.experts) + ")");
    const dtype xt = c.x_dtype == "F32" ? dtype::F32 : dtype::BF16;
    moereg_tensor_view x = contiguous_view(c.x, xt, {c.tokens, w.hidden});
    moereg_tensor_view ids = contiguous_view(c.topk_ids, dtype::I64, {c.tokens, c.top_k});
    moereg_tensor_view weights = contiguous_view(c.topk_weights, dtype::F32, {c.tokens, c.top_k});
    moereg_tensor_view out = contiguous_view(c.out, dtype::F32, {c.tokens, w.hidden});
    if (on_device)
      for (moereg_tensor_view* v : {&x, &ids, &weights, &out}) v->memory = MOEREG_MEMORY_DEVICE;
    std::lock_guard<std::mutex> lock(impl_->call);
    const backend_instance& b = *impl_->backend;
    throw_if_error(b.api().forward(b.handle(), &x, &ids, &weights, &out), "backend " + impl_->name + " forward");
    return done{};
  });
}

result<std::shared_ptr<experts_backend>> create_experts_backend(const experts_request& r) noexcept {
  return guarded([&]() -> std::shared_ptr<experts_backend> {
    const expert_weights& w = r.weights;
    const dtype wt = weight_dtype(w.dtype);
    if (w.experts <= 0 || w.hidden <= 0 || w.intermediate <= 0)
      throw usage_error("experts: experts, hidden and intermediate must be positive (got E=" + std::to_string(w.experts) +
                        " H=" + std::to_string(w.hidden) + " I=" + std::to_string(w.intermediate) + ")");
    if (!w.gate_up || !w.down) throw usage_error("experts: gate_up and down weights are required");
    if (w.device < -1) throw usage_error("experts: device " + std::to_string(w.device) + "; expected -1 (host memory) or a CUDA device ordinal");
    if (r.top_k < 1 || r.top_k > w.experts)
      throw usage_error("experts: top_k " + std::to_string(r.top_k) + ", expected 1 to " + std::to_string(w.experts));
    auto st = std::make_unique<experts_backend::impl>();
    st->weights = w;
    st->top_k = r.top_k;
    st->registry = make_registry(r.plugin_paths);
    moereg_moe_weights mw{};
    mw.num_experts = w.experts;
    mw.hidden = w.hidden;
    mw.intermediate = w.intermediate;
    mw.w13 = contiguous_view(w.gate_up, wt, {w.experts, 2 * w.intermediate, w.hidden});
    mw.w2 = contiguous_view(w.down, wt, {w.experts, w.hidden, w.intermediate});
    if (w.device >= 0) mw.w13.memory = mw.w2.memory = MOEREG_MEMORY_DEVICE;
    // The caller routes: a backend is handed a plain routing it never uses (forward takes the
    // ids and weights), because create requires one.
    moereg_routing_params routing{};
    routing.num_experts = static_cast<std::int32_t>(w.experts);
    routing.top_k = static_cast<std::int32_t>(r.top_k);
    routing.routed_scaling_factor = 1.0f;
    moereg_backend_options opts{};
    opts.threads = static_cast<std::int32_t>(resolve_threads(r.threads));
    opts.device = w.device >= 0 ? w.device : 0;
    st->backend = create_backend(*st->registry, r.backend, mw, routing, opts, r.backend_options);
    st->name = st->backend->record().name;
    return std::make_shared<experts_backend>(std::move(st));
  });
}

}  // namespace moereg::app
