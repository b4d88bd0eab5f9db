// SPDX-License-Identifier: Apache-2.0
#include "moereg/app/verify.h"

#include "guard.h"
#include "moereg/base/log.h"
#include "moereg/checkpoint/compare.h"
#include "moereg/plan/compare_decoded.h"
#include "session.h"

namespace moereg::app {

namespace {

// A checkpoint no family claims is still compared, by tensor names.
std::unique_ptr<model_session> try_open(const std::string& path, const std::vector<std::string>& plugin_paths) {
  try {
    return std::make_unique<model_session>(open_session({path, "", "", "", plugin_paths}));
  } catch (const error& e) {
    spdlog::debug("{}: compared by tensor names only ({})", path, e.what());
    return nullptr;
  }
}

}  // namespace

result<verify_report> verify(const verify_request& r) noexcept {
  return guarded([&] {
    if (r.a.empty() || r.b.empty()) throw usage_error("verify: two checkpoints are needed");
    comparison c;
    verify_report rep;
    rep.how = "by tensor name";
    auto ma = try_open(r.a, r.plugin_paths), mb = try_open(r.b, r.plugin_paths);
    if (ma && mb && ma->model_type == mb->model_type && ma->layout->name != mb->layout->name) {
      decoded_checkpoint da = decode_checkpoint(*ma->ckpt, ma->spec, *ma->layout, ma->dims);
      decoded_checkpoint db = decode_checkpoint(*mb->ckpt, mb->spec, *mb->layout, mb->dims);
      c = compare_decoded(da, db, ma->hooks(), mb->hooks());
      rep.how = "through layouts " + ma->layout->name + " and " + mb->layout->name + " (family " + ma->model_type + "; in canonical form: each expert's gate, up and down count as one tensor each)";
    } else {
      checkpoint_options opts;
      opts.require_config = false;
      c = compare_checkpoints(checkpoint::open(r.a, opts), checkpoint::open(r.b, opts));
    }
    rep.equal = c.equal();
    rep.compared = c.compared;
    rep.bytes_compared = c.bytes_compared;
    for (auto& d : c.differences) rep.differences.push_back({d.kind, d.name, d.detail});
    return rep;
  });
}

}  // namespace moereg::app
