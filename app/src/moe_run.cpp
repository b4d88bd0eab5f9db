// SPDX-License-Identifier: Apache-2.0
#include "moereg/app/moe.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "backend_choice.h"
#include "expert_parallel.h"
#include "guard.h"
#include "moereg/base/parallel.h"
#include "moereg/plan/moe_layer.h"
#include "moereg/routing/router.h"
#include "moereg/tensor/dtype.h"
#include "moereg/tensor/tensor_view.h"
#include "session.h"

namespace moereg::app {

namespace {

namespace fs = std::filesystem;

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return fs::equivalent(a, b, ec) && !ec;
}

// A result file written over what the run reads would lose the checkpoint (exit 0, and the
// output looks fine): refused before any work.
void refuse_output_over_sources(const moe_run_request& r) {
  const fs::path out(r.output);
  const std::string named = "moe run: output " + r.output;
  std::error_code dir_ec;
  if (fs::is_directory(out, dir_ec) || r.output.back() == '/')
    throw usage_error(named + " is a directory; expected the path of the .safetensors file to write");
  if (!r.input_file.empty() && same_file(out, r.input_file)) throw usage_error(named + " is the input file; choose another path");
  std::error_code ec;
  if (fs::is_directory(r.checkpoint, ec)) {
    for (const auto& e : fs::directory_iterator(r.checkpoint, ec))
      if (same_file(out, e.path()))
        throw usage_error(named + " is " + e.path().string() + ", a file of the checkpoint; choose a path outside " + r.checkpoint);
    const std::string ext = out.extension().string();
    if ((ext == ".safetensors" || ext == ".gguf") && same_file(fs::absolute(out).parent_path(), r.checkpoint))
      throw usage_error(named + " is inside the checkpoint directory " + r.checkpoint +
                        ", where the next read of it would take the file for one of its shards; choose a path outside it");
  } else if (same_file(out, r.checkpoint)) {
    throw usage_error(named + " is the checkpoint file; choose another path");
  }
}

}  // namespace

result<moe_run_result> run_moe(const moe_run_request& r) noexcept {
  return guarded([&] {
    using clock = std::chrono::steady_clock;
    if (r.checkpoint.empty()) throw usage_error("run_moe: no checkpoint given");
    if (r.layer < 0) throw usage_error("run_moe: layer " + std::to_string(r.layer) + ": expected 0 or more");
    if (!r.output.empty()) refuse_output_over_sources(r);
    const int threads = static_cast<int>(resolve_threads(r.threads));
    const auto t0 = clock::now();
    model_session s = open_session({r.checkpoint, r.family, r.layout, "", r.plugin_paths});
    refuse_running_a_slice(s.ckpt->config(), r.checkpoint);
    decoded_checkpoint dec = decode_checkpoint(*s.ckpt, s.spec, *s.layout, s.dims);
    std::unique_ptr<moe_layer> layer = load_moe_layer(dec, r.layer);

    const moe_input& in = r.input;
    const std::int64_t T = in.tokens, H = s.dims.H, K = s.dims.K, E = s.dims.E;
    if (in.hidden != H || T < 0)
      throw error(in.what + " has shape [" + std::to_string(T) + ", " + std::to_string(in.hidden) + "], expected [T, " +
                  std::to_string(H) + "]");
    if (in.dtype != "F32" && in.dtype != "BF16") throw error(in.what + " is " + in.dtype + ", expected F32 or BF16");
    if (!in.data && T > 0) throw usage_error(in.what + ": no data");
    const dtype type = in.dtype == "F32" ? dtype::F32 : dtype::BF16;
    moereg_tensor_view xv = contiguous_view(const_cast<void*>(in.data), type, {T, H});
    // A NaN or infinite activation routes arbitrarily (top-k of NaN logits) and gives NaN rows.
    for (std::int64_t i = 0; i < T * H; ++i) {
      float v;
      if (type == dtype::F32) std::memcpy(&v, static_cast<const std::byte*>(in.data) + 4 * i, 4);
      else {
        std::uint16_t b;
        std::memcpy(&b, static_cast<const std::byte*>(in.data) + 2 * i, 2);
        v = bf16_to_f32(b);
      }
      if (!std::isfinite(v))
        throw error(in.what + ": element [" + std::to_string(i / H) + ", " + std::to_string(i % H) + "] is " +
                    (std::isnan(v) ? "NaN" : "infinite") + ", expected finite activations");
    }

    router rt(layer->routing, s.spec.manifest_path + " routing");
    routing_result routed;
    rt.route(xv, routed);

    moereg_backend_options opts{};
    opts.threads = threads;
    const auto t_create = clock::now();
    std::unique_ptr<backend_instance> backend =
        create_backend(*s.registry, r.backend, layer->weights, layer->routing, opts, r.backend_options);
    moe_run_result out;
    out.output.assign(static_cast<std::size_t>(T * H), 0.0f);
    moereg_tensor_view ids = contiguous_view(routed.ids.data(), dtype::I64, {T, K});
    moereg_tensor_view weights = contiguous_view(routed.weights.data(), dtype::F32, {T, K});
    moereg_tensor_view ov = contiguous_view(out.output.data(), dtype::F32, {T, H});
    const auto t_forward = clock::now();
    throw_if_error(backend->api().forward(backend->handle(), &xv, &ids, &weights, &ov), "backend " + backend->record().name + " forward");
    const auto t_done = clock::now();

    auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    out.backend = backend->record().name;
    out.why = backend->why();
    out.describe = backend->describe();
    out.family = s.spec.name;
    out.layout = s.layout->name;
    out.layer_describe = layer->describe;
    out.layer = layer->layer;
    out.tokens = T;
    out.hidden = H;
    out.experts = E;
    out.top_k = K;
    out.packed_bytes = layer->packed_bytes;
    out.router_logits = std::move(routed.logits);
    out.topk_ids = std::move(routed.ids);
    out.topk_weights = std::move(routed.weights);
    out.load_ms = ms(t0, t_create);
    out.create_ms = ms(t_create, t_forward);
    out.forward_ms = ms(t_forward, t_done);
    return out;
  });
}

}  // namespace moereg::app
