// SPDX-License-Identifier: Apache-2.0
#include "moereg/app/model.h"

#include "guard.h"
#include "moereg/gguf/ggml_type.h"
#include "moereg/plan/decoded_checkpoint.h"
#include "session.h"

namespace moereg::app {

void list_tensors(const checkpoint& ckpt, model_info& m) {
  m.path = ckpt.path();
  for (const auto& e : ckpt.tensors()) {
    m.tensors.push_back({e.info->name, storage_type_name(*e.info), e.info->shape, e.info->nbytes()});
    m.total_bytes += e.info->nbytes();
  }
}

model_info describe_model(const model_session& s) {
  model_info m;
  m.family = s.spec.name;
  m.model_type = s.model_type;
  m.layout = s.layout->name;
  for (const auto& l : s.spec.layouts) m.layouts.push_back(l.name);
  m.config_json = json::dump(s.ckpt->config(), 2);
  m.dims = s.dims.describe();
  m.layers = static_cast<std::int64_t>(s.dims.moe_layers.size());
  m.experts = s.dims.E;
  m.experts_per_token = s.dims.K;
  m.hidden = s.dims.H;
  m.intermediate = s.dims.I;
  list_tensors(*s.ckpt, m);
  return m;
}

result<model_info> open_model(const open_request& r) noexcept {
  return guarded([&] {
    if (r.path.empty()) throw usage_error("open_model: no checkpoint path given");
    model_session s = open_session({r.path, r.family, r.layout, "", r.plugin_paths});
    // The tensors read as the family and layout say (headers only, as inspect does): a layout or
    // family given by the caller was taken on trust, and a config whose E disagrees with the
    // tensors was reported as it said.
    decode_checkpoint(*s.ckpt, s.spec, *s.layout, s.dims);
    return describe_model(s);
  });
}

}  // namespace moereg::app
