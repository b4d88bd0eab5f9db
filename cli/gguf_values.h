// SPDX-License-Identifier: Apache-2.0
// gguf_values.h - a GGUF metadata value as `inspect` shows it: JSON (long arrays summarised)
// or one line of text (strings escaped and cut, arrays as [TYPE x N]).
#pragma once

#include <string>

#include "moereg/base/json.h"
#include "moereg/gguf/gguf_value.h"

namespace moereg::cli {

// Scalars as they are; an array as a list, or when long as
// {"type": "array", "element_type": "STRING", "count": N, "first": [...]}.
json::value gguf_json(const gguf_value& v);

// One line of text per key: strings escaped and cut at 72 bytes, arrays as [TYPE x N].
std::string gguf_text(const gguf_value& v);

}  // namespace moereg::cli
