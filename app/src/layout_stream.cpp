// SPDX-License-Identifier: Apache-2.0
#include "moereg/app/layout_stream.h"

#include <algorithm>

#include "guard.h"
#include "moereg/base/parallel.h"
#include "moereg/exec/executor.h"
#include "moereg/gguf/ggml_type.h"
#include "session.h"

namespace moereg::app {

// The plan points into the decoded source, which points into the session's checkpoint and
// family spec: all three live here, in the heap, for as long as the stream.
struct layout_stream::impl {
  model_session session;
  decoded_checkpoint source;
  conversion_plan plan;
  hook_runner hooks;
  int threads = 0;
  std::string to;
  std::vector<tensor_entry> tensors;
  std::uint64_t largest = 0;
};

layout_stream::layout_stream(std::unique_ptr<impl> state) : impl_(std::move(state)) {}
layout_stream::~layout_stream() = default;

const std::string& layout_stream::family() const noexcept { return impl_->session.spec.name; }
const std::string& layout_stream::from() const noexcept { return impl_->session.layout->name; }
const std::string& layout_stream::to() const noexcept { return impl_->to; }
const std::vector<tensor_entry>& layout_stream::tensors() const noexcept { return impl_->tensors; }
std::uint64_t layout_stream::largest_bytes() const noexcept { return impl_->largest; }

result<done> layout_stream::produce(std::size_t index, void* dst, std::uint64_t capacity) const noexcept {
  return guarded([&] {
    if (index >= impl_->tensors.size())
      throw usage_error("layout_stream::produce: tensor " + std::to_string(index) + " asked for; the stream has " +
                        std::to_string(impl_->tensors.size()));
    const tensor_entry& t = impl_->tensors[index];
    if (!dst || capacity < t.bytes)
      throw usage_error("layout_stream::produce: " + t.name + " needs " + std::to_string(t.bytes) + " bytes; the buffer holds " +
                        std::to_string(dst ? capacity : 0));
    execute_options eo;
    eo.threads = impl_->threads;
    eo.hooks = impl_->hooks;
    produce_tensor(impl_->plan, index, static_cast<std::byte*>(dst), eo);
    return done{};
  });
}

result<std::shared_ptr<const layout_stream>> open_layout_stream(const layout_stream_request& r) noexcept {
  return guarded([&]() -> std::shared_ptr<const layout_stream> {
    if (r.source.empty()) throw usage_error("open_layout_stream: no source checkpoint given");
    if (r.to.empty()) throw usage_error("open_layout_stream: no target layout given");
    if (r.experts && (r.experts->first < 0 || r.experts->first >= r.experts->second))
      throw usage_error("open_layout_stream: experts [" + std::to_string(r.experts->first) + ", " +
                        std::to_string(r.experts->second) + "): expected 0 <= first < second");
    resolve_threads(r.threads, "threads");  // its range, before any work
    auto st = std::make_unique<layout_stream::impl>();
    st->session = open_session({r.source, r.family, r.from, r.to, r.plugin_paths});
    const model_session& s = st->session;
    const layout_spec* target = s.spec.find_layout(r.to);
    st->to = target->name;
    st->source = decode_checkpoint(*s.ckpt, s.spec, *s.layout, s.dims);
    plan_options po;
    po.experts = r.experts;
    po.renumber_experts = r.experts.has_value();  // the names convert --experts writes
    po.dequantize = r.to_bf16;
    st->plan = plan_conversion(st->source, *target, po);
    st->hooks = st->session.hooks();
    st->threads = r.threads;
    for (const auto& o : st->plan.outputs) {
      tensor_info as_stored;
      as_stored.type = o.spec.type;
      as_stored.ggml_blocks = o.spec.ggml_blocks;
      st->tensors.push_back({o.spec.name, storage_type_name(as_stored), o.spec.shape, o.spec.nbytes()});
      st->largest = std::max(st->largest, o.spec.nbytes());
    }
    return std::make_shared<const layout_stream>(std::move(st));
  });
}

}  // namespace moereg::app
