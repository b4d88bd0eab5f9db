// SPDX-License-Identifier: Apache-2.0
// The host side of the C ABI: statuses (host-allocated, so a plugin never frees host
// memory), logging into spdlog, and the conversion of a returned status into moereg::error.
#include <new>
#include <string>

#include "moereg/base/error.h"
#include "moereg/base/log.h"
#include "moereg/registry/plugin_registry.h"

struct moereg_status {
  int32_t code;
  std::string message;
};

namespace moereg {

namespace {

// Returned when even allocating a status fails; throw_if_error never deletes it.
moereg_status out_of_memory_status{MOEREG_OUT_OF_MEMORY, "out of memory (while reporting a plugin error)"};

moereg_status* status_create(int32_t code, const char* message) noexcept {
  try {
    return new moereg_status{code == MOEREG_OK ? MOEREG_INTERNAL : code, message ? message : "(no message)"};
  } catch (...) {
    return &out_of_memory_status;
  }
}

void host_log(int32_t level, const char* message) noexcept {
  try {
    // The function pointer carries no context, so the host cannot tell which plugin
    // called; the prefix says at least that the line came from plugin code.
    const char* text = message ? message : "";
    switch (level) {
      case MOEREG_LOG_TRACE: spdlog::trace("plugin: {}", text); break;
      case MOEREG_LOG_DEBUG: spdlog::debug("plugin: {}", text); break;
      case MOEREG_LOG_INFO: spdlog::info("plugin: {}", text); break;
      case MOEREG_LOG_WARN: spdlog::warn("plugin: {}", text); break;
      default: spdlog::error("plugin: {}", text); break;
    }
  } catch (...) {
    // Logging must never throw across the C boundary.
  }
}

}  // namespace

const moereg_host_api* plugin_registry::host_api() {
  static const moereg_host_api api = {MOEREG_PLUGIN_API_VERSION, &status_create, &host_log};
  return &api;
}

std::pair<int32_t, std::string> take_status(moereg_status* status) {
  if (!status) return {MOEREG_OK, ""};
  std::pair<int32_t, std::string> r{status->code, status->message};
  if (status != &out_of_memory_status) delete status;
  return r;
}

void throw_if_error(moereg_status* status, const std::string& who) {
  if (!status) return;
  throw error(who + ": " + take_status(status).second);
}

}  // namespace moereg
