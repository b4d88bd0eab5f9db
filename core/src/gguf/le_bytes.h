// SPDX-License-Identifier: Apache-2.0
// GGUF is little-endian and unaligned; so is every host moereg builds for (x86-64, aarch64),
// so a value is its bytes, copied with memcpy to stay clear of alignment and aliasing rules.
#pragma once

#include <cstring>
#include <string>

namespace moereg::gguf_bytes {

template <class T>
void append(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

template <class T>
T load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace moereg::gguf_bytes
