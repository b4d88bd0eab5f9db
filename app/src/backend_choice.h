// SPDX-License-Identifier: Apache-2.0
// backend_choice.h - the fused-MoE backend a command runs on: the one named with --backend,
// or (auto) the usable backend with the best probe score, created on one layer's experts.
// With auto, a backend that refuses the layer (UNSUPPORTED: say FP8 experts on a backend
// without FP8) hands over to the next best score, and `why` records it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "moereg/abi/moereg_backend.h"
#include "moereg/registry/plugin_registry.h"

namespace moereg::app {

class backend_instance {
 public:
  // kept: weights made for this backend alone (an older table's BF16 shared expert), which
  // must live as long as the handle.
  backend_instance(const plugin_record* record, const moereg_backend_api* api, moereg_backend* handle, std::string why,
                   std::unique_ptr<std::uint16_t[]> kept = nullptr)
      : record_(record), api_(api), handle_(handle), why_(std::move(why)), kept_(std::move(kept)) {}
  ~backend_instance() { api_->destroy(handle_); }
  backend_instance(const backend_instance&) = delete;
  backend_instance& operator=(const backend_instance&) = delete;

  const plugin_record& record() const { return *record_; }
  const moereg_backend_api& api() const { return *api_; }
  moereg_backend* handle() const { return handle_; }
  const std::string& why() const { return why_; }  // "asked for with --backend cuda", "auto: ..."
  // The backend's own account of itself (its describe slot: kernels, any copy of the experts
  // made at create); empty when it has none. Throws moereg::error on a failed call.
  std::string describe() const;

 private:
  const plugin_record* record_;
  const moereg_backend_api* api_;
  moereg_backend* handle_;
  std::string why_;
  std::unique_ptr<std::uint16_t[]> kept_;
};

// `--backend-option key=value`, in the order given (a later key overrides an earlier one).
using backend_option_list = std::vector<std::pair<std::string, std::string>>;

// Throws moereg::error naming the backends found and their probe scores when none can run,
// or the backend's own message when it refuses the layer (or an option) and nothing else may
// take it. Backend options go to the backend created (its create_with_options, plugin API
// 2); a backend without that slot refuses them. A backend whose table predates API 3 gets an
// F8_E4M3 shared expert widened to BF16 (shared_expert_to_bf16), which it can read.
std::unique_ptr<backend_instance> create_backend(plugin_registry& registry, const std::string& wanted,
                                                 const moereg_moe_weights& weights, const moereg_routing_params& routing,
                                                 const moereg_backend_options& options,
                                                 const backend_option_list& backend_options = {});

}  // namespace moereg::app
