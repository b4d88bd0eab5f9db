// SPDX-License-Identifier: Apache-2.0
// The extension module moereg._moereg; the package moereg (python/moereg/__init__.py) is what
// users import, and re-exports it.
#include "bindings.h"

PYBIND11_MODULE(_moereg, m) {
  m.doc() = "moereg's application API (libmoereg) for Python; import `moereg`, not this module.";
  using namespace moereg::python;
  bind_errors(m);
  bind_checkpoint(m);
  bind_layout_stream(m);
  bind_convert(m);
  bind_verify(m);
  bind_lora(m);
  bind_moe(m);
  bind_experts(m);
}
