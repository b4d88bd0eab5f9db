// SPDX-License-Identifier: Apache-2.0
#include "moereg/registry/plugin_trust.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <filesystem>

namespace moereg {

namespace fs = std::filesystem;

namespace {

std::string octal(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// One file or directory: owner and write bits.
std::string check_one(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return path + ": cannot stat " + what + ": " + std::strerror(errno);
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return path + ": " + what + " is writable by group or others (mode " + octal(st.st_mode) +
           "), expected no group/other write permission (chmod go-w)";
  uid_t me = ::geteuid();
  if (st.st_uid != 0 && st.st_uid != me)
    return path + ": " + what + " is owned by uid " + std::to_string(st.st_uid) + ", expected root or the current user (uid " +
           std::to_string(me) + ")";
  return "";
}

std::string real(const std::string& path) {
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  return ec ? fs::absolute(path).lexically_normal().string() : p.string();
}

}  // namespace

std::string library_trust_problem(const std::string& library_path) {
  std::string lib = real(library_path);
  if (std::string r = check_one(lib, "library"); !r.empty()) return r;
  return check_one(fs::path(lib).parent_path().string(), "directory of library " + fs::path(lib).filename().string());
}

std::string manifest_trust_problem(const std::string& manifest_path, const std::string& search_root) {
  fs::path file = real(manifest_path);
  if (std::string r = check_one(file.string(), "plugin manifest"); !r.empty()) return r;
  fs::path root = real(search_root.empty() ? file.parent_path().string() : search_root);
  // The plugin's directory always; then each one above it up to the search directory, when
  // the manifest is really inside it (a symlink may lead elsewhere: then its own directory).
  fs::path dir = file.parent_path();
  auto [ri, di] = std::mismatch(root.begin(), root.end(), dir.begin(), dir.end());
  bool inside = ri == root.end();
  for (;;) {
    std::string what = dir == file.parent_path() ? "directory of plugin manifest " + file.filename().string()
                                                 : "directory on the plugin search path";
    if (std::string r = check_one(dir.string(), what); !r.empty()) return r;
    if (!inside || dir == root || !dir.has_parent_path() || dir.parent_path() == dir) break;
    dir = dir.parent_path();
  }
  return "";
}

std::string forbidden_location_problem(const std::string& path, const std::vector<std::string>& forbidden_dirs,
                                       const std::string& what) {
  fs::path p = real(path);
  for (const auto& dir : forbidden_dirs) {
    if (dir.empty()) continue;
    fs::path f = real(dir);
    auto [fi, pi] = std::mismatch(f.begin(), f.end(), p.begin(), p.end());
    if (fi == f.end())
      return path + ": " + what + " is inside the checkpoint directory " + f.string() +
             "; plugins are never loaded from a checkpoint's own directory";
  }
  return "";
}

}  // namespace moereg
