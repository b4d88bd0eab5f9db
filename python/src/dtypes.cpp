// SPDX-License-Identifier: Apache-2.0
// moereg's dtypes (safetensors' names) as numpy dtypes. numpy has no bfloat16 or float8:
// those are handed out as unsigned integers of their width, the bits unchanged
// (moereg.to_torch() reinterprets them without a copy).
#include <map>

#include "bindings.h"

namespace moereg::python {

py::dtype numpy_dtype(const std::string& name) {
  static const std::map<std::string, const char*> numpy_names = {
      {"BOOL", "?"},    {"U8", "u1"},     {"I8", "i1"},     {"I16", "<i2"}, {"I32", "<i4"}, {"I64", "<i8"},
      {"U16", "<u2"},   {"U32", "<u4"},   {"U64", "<u8"},   {"F16", "<f2"}, {"F32", "<f4"}, {"F64", "<f8"},
      {"BF16", "<u2"},  {"F8_E4M3", "u1"}, {"F8_E5M2", "u1"}, {"F8_E8M0", "u1"}};
  auto it = numpy_names.find(name);
  // Anything else is a GGUF block type (Q4_K, ...): opaque bytes, with the byte shape moereg
  // reports for it.
  return py::dtype(it == numpy_names.end() ? "u1" : it->second);
}

}  // namespace moereg::python
