// SPDX-License-Identifier: Apache-2.0
#include "moereg/app/mapped.h"

#include <optional>

#include "guard.h"
#include "moereg/plan/decoded_checkpoint.h"
#include "session.h"

namespace moereg::app {

// The session (or, without identification, the bare checkpoint) owns the mappings the
// pointers handed out point into.
struct mapped_checkpoint::impl {
  std::optional<model_session> session;
  std::unique_ptr<checkpoint> bare;
  model_info info;
  const checkpoint& ckpt() const { return session ? *session->ckpt : *bare; }
};

mapped_checkpoint::mapped_checkpoint(std::unique_ptr<impl> state) : impl_(std::move(state)) {}
mapped_checkpoint::~mapped_checkpoint() = default;

const model_info& mapped_checkpoint::info() const noexcept { return impl_->info; }

const std::byte* mapped_checkpoint::data(std::string_view name) const noexcept {
  const checkpoint::entry* e = impl_->ckpt().find(name);
  return e ? e->data() : nullptr;
}

result<std::shared_ptr<const mapped_checkpoint>> map_checkpoint(const map_request& r) noexcept {
  return guarded([&]() -> std::shared_ptr<const mapped_checkpoint> {
    if (r.path.empty()) throw usage_error("map_checkpoint: no checkpoint path given");
    auto state = std::make_unique<mapped_checkpoint::impl>();
    if (r.identify) {
      state->session.emplace(open_session({r.path, r.family, r.layout, "", r.plugin_paths}));
      decode_checkpoint(*state->session->ckpt, state->session->spec, *state->session->layout, state->session->dims);  // as open_model
      state->info = describe_model(*state->session);
    } else {
      if (!r.family.empty() || !r.layout.empty())
        throw usage_error("map_checkpoint: a family or layout was given for a checkpoint opened without identification");
      checkpoint_options co;
      co.require_config = false;
      state->bare = std::make_unique<checkpoint>(checkpoint::open(r.path, co));
      list_tensors(*state->bare, state->info);
    }
    return std::make_shared<const mapped_checkpoint>(std::move(state));
  });
}

}  // namespace moereg::app
