// SPDX-License-Identifier: Apache-2.0
// dl_library.h - a shared library the backend opens on first use (dlopen), so the backend
// itself links only the CUDA driver and runtime: its entry points are resolved by name, and the
// first thing that failed is kept as one sentence (describe and the refusals quote it).
#pragma once

#include <dlfcn.h>

#include <string>

namespace moereg::cuda {

class dl_library {
 public:
  explicit dl_library(const char* soname) : soname_(soname) {
    handle_ = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (!handle_) {
      const char* e = dlerror();
      error_ = "cannot load " + soname_ + ": " + (e ? e : "unknown error");
    }
  }
  // fn = the symbol `name` (left null, and the error kept, when the library lacks it).
  template <class Fn>
  void resolve(Fn& fn, const char* name) {
    fn = handle_ ? reinterpret_cast<Fn>(dlsym(handle_, name)) : nullptr;
    if (!fn && error_.empty()) error_ = soname_ + " has no " + name;
  }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

 private:
  std::string soname_;
  void* handle_ = nullptr;
  std::string error_;
};

}  // namespace moereg::cuda
