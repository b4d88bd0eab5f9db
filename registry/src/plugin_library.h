// SPDX-License-Identifier: Apache-2.0
// plugin_library.h (internal) - opens one plugin library with Boost.DLL, resolves its entry
// through that library's own handle, and checks the table it returns. Each function returns
// "" on success or the whole refusal reason ("<file>: what, expected X, found Y").
#pragma once

#include <boost/dll/shared_library.hpp>

#include <memory>
#include <string>
#include <vector>

#include "moereg/abi/moereg_backend.h"
#include "moereg/abi/moereg_hooks.h"

namespace moereg::detail {

struct hook_library {
  std::unique_ptr<boost::dll::shared_library> handle;
  const moereg_hooks_api* table = nullptr;
};

struct backend_library {
  std::unique_ptr<boost::dll::shared_library> handle;
  const moereg_backend_api* table = nullptr;
  int score = -1;
  std::string probe_reason;
};

// `manifest_name_at` and `hooks_at` are "plugin.yaml:line" for the messages.
std::string open_hook_library(const std::string& path, const std::string& manifest_name, const std::string& manifest_name_at,
                              const std::vector<std::string>& manifest_hooks, const std::string& hooks_at,
                              hook_library& out);

// Opens, checks the table and calls probe. A score of 0 is not a failure here: the caller
// records it as a refusal with out.probe_reason.
std::string open_backend_library(const std::string& path, const std::string& expected_name, backend_library& out);

}  // namespace moereg::detail
