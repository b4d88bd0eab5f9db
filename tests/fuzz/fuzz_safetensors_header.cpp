// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the safetensors header parser on arbitrary bytes. moereg::error is
// the expected outcome for bad input; anything else is a bug.
#include <cstddef>
#include <cstdint>

#include "moereg/base/error.h"
#include "moereg/safetensors/safetensors_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    auto h = moereg::parse_safetensors_header(reinterpret_cast<const std::byte*>(data), size, size, "fuzz.safetensors");
    volatile std::uint8_t sink = 0;
    for (const auto& t : h.tensors)
      if (t.nbytes()) sink = sink + data[8 + h.header_size + t.end - 1];
  } catch (const moereg::error&) {
  }
  return 0;
}
