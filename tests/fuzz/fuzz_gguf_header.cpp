// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the GGUF header parser on arbitrary bytes. moereg::error is the
// expected outcome for bad input; anything else (a crash, a sanitizer report, another
// exception such as std::bad_alloc) is a bug.
#include <cstddef>
#include <cstdint>

#include "moereg/base/error.h"
#include "moereg/gguf/gguf_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    auto h = moereg::parse_gguf_header(reinterpret_cast<const std::byte*>(data), size, "fuzz.gguf");
    // Touch every accepted tensor's first and last byte: the ranges were promised in bounds.
    volatile std::uint8_t sink = 0;
    for (const auto& t : h.tensors) {
      sink = sink + data[h.data_offset + t.offset];
      sink = sink + data[h.data_offset + t.offset + t.nbytes - 1];
    }
    // Arrays stay encoded and are decoded on demand: decode every one.
    for (const auto& [key, v] : h.metadata) {
      if (v.type() != moereg::gguf_type::array) continue;
      for (const auto& item : v.items()) sink = sink + static_cast<std::uint8_t>(item.as_u64() + item.as_string().size());
      for (auto s : v.string_items()) sink = sink + static_cast<std::uint8_t>(s.size());
      if (v.array_size()) sink = sink + static_cast<std::uint8_t>(v.item(v.array_size() - 1).as_u64());
    }
  } catch (const moereg::error&) {
  }
  return 0;
}
