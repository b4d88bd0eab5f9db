// SPDX-License-Identifier: Apache-2.0
#include "doc_location.h"

#include <boost/dll/runtime_symbol_info.hpp>
#include <filesystem>
#include <system_error>

namespace fs = std::filesystem;

namespace moereg::app {

std::string installed_doc_dir() {
  static const std::string dir = [] {
    // The binary links the application statically: this code lies in it. A program using
    // libmoereg.so runs this code from the library, whose directory is the prefix's libdir.
    boost::dll::fs::error_code ec;
    const fs::path exe = boost::dll::program_location(ec).parent_path().string();
    fs::path here = boost::dll::this_line_location(ec).parent_path().string();
    const bool in_library = !ec && !here.empty() && here != exe;
    const fs::path candidate = in_library ? here / MOEREG_LIB_TO_DOC : exe / MOEREG_BIN_TO_DOC;
    std::error_code fec;
    if (!exe.empty() && fs::is_directory(candidate, fec)) return candidate.lexically_normal().string();
    return std::string(MOEREG_DOC_DIR);
  }();
  return dir;
}

std::string doc_ref(const std::string& page) {
  return "docs/" + page + " in the source, " + installed_doc_dir() + "/" + page + " when installed";
}

}  // namespace moereg::app
