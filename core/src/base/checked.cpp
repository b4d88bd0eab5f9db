// SPDX-License-Identifier: Apache-2.0
#include "moereg/base/checked.h"

#include <string>

#include "moereg/base/error.h"

namespace moereg {

void throw_overflow(std::string_view context) {
  throw error(std::string(context) + ": size arithmetic overflows 64 bits");
}

}  // namespace moereg
