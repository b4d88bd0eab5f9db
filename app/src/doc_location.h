// SPDX-License-Identifier: Apache-2.0
// doc_location.h - where a user reads the project's docs/ pages, for help texts and hints.
#pragma once

#include <string>

namespace moereg::app {

// The installed docs of the code that runs: found from where the moereg binary or libmoereg.so
// lies (<bindir>/../share/doc/moereg for the prefix's layout), so a package unpacked elsewhere
// (`dpkg -x moereg.deb DIR`) or an install moved after the build names its own; where none is
// there (the build tree), the configured prefix's <datadir>/doc/moereg.
std::string installed_doc_dir();

// "docs/PAGE in the source, <installed_doc_dir()>/PAGE when installed".
std::string doc_ref(const std::string& page);

}  // namespace moereg::app
