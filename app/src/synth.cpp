// SPDX-License-Identifier: Apache-2.0
#include "moereg/app/synth.h"

#include "guard.h"
#include "moereg/base/cancel.h"
#include "moereg/base/error.h"
#include "moereg/lora/synthetic_lora.h"
#include "moereg/synth/synthetic_checkpoint.h"

namespace moereg::app {

result<synth_report> synthesize(const synth_request& r) noexcept {
  return guarded([&] {
    if (r.out.empty()) throw usage_error("synthesize: no output directory given");
    if (r.layers < 1 || r.layers > 65536)
      throw usage_error("synthesize: layers " + std::to_string(r.layers) + ": expected 1 to 65536");
    if (r.lora_rank < 0 || r.lora_rank > 65536)
      throw usage_error("synthesize: LoRA rank " + std::to_string(r.lora_rank) + ": expected 0 to 65536");
    std::string out = r.out;
    while (out.size() > 1 && out.back() == '/') out.pop_back();
    synthetic_options o;
    o.shard_size = r.shard_size;
    o.seed = r.seed;
    o.threads = r.threads;
    const synthetic_dims d = synthetic_preset(r.preset, r.layers);
    synth_report rep;
    try {
      rep.bytes = write_synthetic_qwen3_moe(out, d, o);
      if (r.lora_rank > 0) {
        rep.lora_dir = r.lora_out.empty() ? out + "-lora" : r.lora_out;
        rep.lora_bytes = write_synthetic_lora(rep.lora_dir, out, d, r.lora_rank, o.seed);
      }
    } catch (const cancelled& c) {
      throw cancelled(c.signal_number(), out + ": everything this run wrote was removed");
    }
    return rep;
  });
}

}  // namespace moereg::app
