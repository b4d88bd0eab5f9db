# SPDX-License-Identifier: Apache-2.0
# Compiler settings shared by every moereg target: warnings, sanitizers, visibility.
add_library(moereg_options INTERFACE)
target_compile_options(moereg_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX,C>:-Wall -Wextra -Wpedantic -Wshadow -Wno-missing-field-initializers>
  # GCC 12 reports -Wrestrict false positives inside std::string operator+.
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-restrict>)
if(MOEREG_WERROR)
  target_compile_options(moereg_options INTERFACE $<$<COMPILE_LANGUAGE:CXX,C>:-Werror>)
endif()
if(MOEREG_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  # GCC 12 reports maybe-uninitialized false positives inside libstdc++ (std::regex,
  # std::function) when instrumented; they are not in our code.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    add_compile_options(-Wno-maybe-uninitialized)
  endif()
  add_link_options(-fsanitize=address,undefined)
endif()
set(CMAKE_CXX_VISIBILITY_PRESET hidden)
set(CMAKE_VISIBILITY_INLINES_HIDDEN ON)
