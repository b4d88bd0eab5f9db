// SPDX-License-Identifier: Apache-2.0
// plugin_trust.h - the checks made before any plugin code is loaded. Plugins are code: a
// library someone else could have replaced, or one shipped inside a checkpoint, is refused.
// Each function returns "" when the check passes, else the whole refusal reason.
#pragma once

#include <string>
#include <vector>

namespace moereg {

// The library file and its directory must not be writable by group or others, and must be
// owned by root or by the current user.
std::string library_trust_problem(const std::string& library_path);

// The same rules for a family plugin's plugin.yaml (with or without a library: the YAML
// alone decides which bytes go where), its directory, and every directory above it up to
// and including search_root, the search directory it was found in.
std::string manifest_trust_problem(const std::string& manifest_path, const std::string& search_root);

// `path` must not be inside (or equal to) any of `forbidden_dirs`, compared after realpath.
// `what` names the thing for the message ("plugin directory", "library").
std::string forbidden_location_problem(const std::string& path, const std::vector<std::string>& forbidden_dirs,
                                       const std::string& what);

}  // namespace moereg
