# SPDX-License-Identifier: Apache-2.0
# Build rules shared by plugins/ and tests/abi/: how a family plugin or a backend library
# is laid out in the build tree (mirroring the install tree) and installed.
set(MOEREG_COPY_FILE_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/moereg_copy_file.cmake)

# Makes a built library and its directory 0755, whatever the umask (see moereg_copy_file.cmake).
function(moereg_plugin_permissions target)
  add_custom_command(TARGET ${target} POST_BUILD
    COMMAND chmod 0755 $<TARGET_FILE:${target}> $<TARGET_FILE_DIR:${target}>
    VERBATIM)
endfunction()

# A hook or backend library: built only against the public SDK, exactly named, loadable.
function(moereg_plugin_library target output_name output_dir)
  add_library(${target} MODULE ${ARGN})
  target_link_libraries(${target} PRIVATE moereg_sdk moereg_options)
  set_target_properties(${target} PROPERTIES PREFIX "" OUTPUT_NAME ${output_name} SUFFIX ".so"
    LIBRARY_OUTPUT_DIRECTORY ${output_dir} CXX_VISIBILITY_PRESET hidden)
  moereg_plugin_permissions(${target})
endfunction()

# Copies one file into the build tree at build time, so edits to it propagate.
function(moereg_plugin_copy target src dst)
  add_custom_command(OUTPUT ${dst}
    COMMAND ${CMAKE_COMMAND} -DSRC=${src} -DDST=${dst} -P ${MOEREG_COPY_FILE_SCRIPT}
    DEPENDS ${src} ${MOEREG_COPY_FILE_SCRIPT} VERBATIM)
  add_custom_target(${target} ALL DEPENDS ${dst})
endfunction()

# plugins/<name>/: plugin.yaml (required) and hooks.cpp (optional) become
# ${MOEREG_PLUGIN_OUTPUT_DIR}/<name>/{plugin.yaml,libmoereg_<name>.so}, installed alike.
function(moereg_add_family_plugin name)
  set(src_dir ${PROJECT_SOURCE_DIR}/plugins/${name})
  set(out_dir ${MOEREG_PLUGIN_OUTPUT_DIR}/${name})
  moereg_plugin_copy(moereg_plugin_${name}_manifest ${src_dir}/plugin.yaml ${out_dir}/plugin.yaml)
  install(FILES ${src_dir}/plugin.yaml DESTINATION ${MOEREG_INSTALL_PLUGIN_DIR}/${name})
  if(EXISTS ${src_dir}/hooks.cpp)
    moereg_plugin_library(moereg_plugin_${name} libmoereg_${name} ${out_dir} ${src_dir}/hooks.cpp)
    add_dependencies(moereg_plugin_${name} moereg_plugin_${name}_manifest)
    install(TARGETS moereg_plugin_${name} LIBRARY DESTINATION ${MOEREG_INSTALL_PLUGIN_DIR}/${name})
  endif()
endfunction()
