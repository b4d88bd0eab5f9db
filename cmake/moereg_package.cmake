# SPDX-License-Identifier: Apache-2.0
# What a user gets beyond the binary and the SDK (docs, man page, bash completion, pkg-config
# file, recipes), and CPack's Debian package of all of it: `cpack -G DEB` in the build dir.
# The package installs under /usr; the binary finds its plugins at ../lib/moereg from itself,
# so an unpacked package (dpkg -x) runs from wherever it lies.

# Docs, the license and the conversion recipes.
file(GLOB MOEREG_DOC_FILES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/LICENSE ${MOEREG_DOC_FILES}
  DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/packaging/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/configs/ DESTINATION ${CMAKE_INSTALL_DATADIR}/moereg/configs
  FILES_MATCHING PATTERN "*.yaml")
# moe bench looks for its PyTorch reference at <exe>/../share/moereg/bench/moe/.
install(PROGRAMS ${PROJECT_SOURCE_DIR}/bench/moe/torch_reference.py DESTINATION ${CMAKE_INSTALL_DATADIR}/moereg/bench/moe)

# pkg-config file of the SDK (header-only, so under share/).
file(STRINGS ${PROJECT_SOURCE_DIR}/core/include/moereg/abi/moereg_abi.h MOEREG_PLUGIN_API_VERSION
  REGEX "^#define MOEREG_PLUGIN_API_VERSION [0-9]+")
string(REGEX MATCH "[0-9]+$" MOEREG_PLUGIN_API_VERSION "${MOEREG_PLUGIN_API_VERSION}")
configure_file(${PROJECT_SOURCE_DIR}/packaging/moereg-sdk.pc.in ${PROJECT_BINARY_DIR}/moereg-sdk.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/moereg-sdk.pc DESTINATION ${CMAKE_INSTALL_DATADIR}/pkgconfig)
# And of libmoereg (it links a library, so under <libdir>/pkgconfig), its prefix found from
# its own directory: two levels up for lib/, three for lib/x86_64-linux-gnu/.
file(RELATIVE_PATH MOEREG_PC_TO_PREFIX /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
string(REGEX REPLACE "/$" "" MOEREG_PC_TO_PREFIX "${MOEREG_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/packaging/moereg.pc.in ${PROJECT_BINARY_DIR}/moereg.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/moereg.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# Man page and bash completion, from the built binary's --help texts.
set(MOEREG_MAN_PAGE ${PROJECT_BINARY_DIR}/share/man/man1/moereg.1)
set(MOEREG_COMPLETION ${PROJECT_BINARY_DIR}/share/bash-completion/completions/moereg)
add_custom_command(OUTPUT ${MOEREG_MAN_PAGE} ${MOEREG_COMPLETION}
  COMMAND ${CMAKE_COMMAND} -DMOEREG=$<TARGET_FILE:moereg> -DMAN_TEMPLATE=${PROJECT_SOURCE_DIR}/packaging/moereg.1.in
    -DMAN_OUT=${MOEREG_MAN_PAGE} -DCOMPLETION_OUT=${MOEREG_COMPLETION} -DVERSION=${PROJECT_VERSION}
    -DDOC_DIR=${CMAKE_INSTALL_FULL_DATADIR}/doc/moereg
    -P ${PROJECT_SOURCE_DIR}/cmake/moereg_help_docs.cmake
  DEPENDS moereg ${PROJECT_SOURCE_DIR}/packaging/moereg.1.in ${PROJECT_SOURCE_DIR}/cmake/moereg_help_docs.cmake
  COMMENT "Writing the man page and bash completion from moereg --help" VERBATIM)
add_custom_target(moereg_help_docs ALL DEPENDS ${MOEREG_MAN_PAGE} ${MOEREG_COMPLETION})
install(FILES ${MOEREG_MAN_PAGE} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${MOEREG_COMPLETION} DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)

# The Debian package.
set(MOEREG_PACKAGE_MAINTAINER "moereg developers <moereg@localhost>"
  CACHE STRING "Maintainer field of the .deb (set it to a real address when publishing)")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME moereg)
set(CPACK_PACKAGE_VENDOR moereg)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${MOEREG_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "read, convert and run Mixture-of-Experts checkpoints")
set(CPACK_PACKAGE_DESCRIPTION
  "moereg knows how each Mixture-of-Experts model family stores its experts through plugins\n"
  "loaded at run time, converts checkpoints between the layouts of a family bit-exactly and\n"
  "in bounded memory, and runs a checkpoint's MoE layer on a CPU or CUDA backend. The package\n"
  "holds the moereg command, the family plugins, the backends, and the SDK (C ABI headers,\n"
  "CMake package, pkg-config file) for writing plugins out of tree.")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_RESOURCE_FILE_README ${PROJECT_SOURCE_DIR}/README.md)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # moereg_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends: the Debian packages of the shared libraries the binary, plugins and backends link
# (dpkg-shlibdeps, from dpkg-dev; cpack also needs `file`).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "python3-torch, bash-completion")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# The Python module (install component `python`) is built for one interpreter, with its numpy:
# the .deb leaves it out. CPack honours CPACK_COMPONENTS_ALL only in component mode, so the
# package is made that way, with every component listed in one .deb.
get_cmake_property(MOEREG_INSTALL_COMPONENTS COMPONENTS)
list(REMOVE_ITEM MOEREG_INSTALL_COMPONENTS python)
set(CPACK_COMPONENTS_ALL ${MOEREG_INSTALL_COMPONENTS})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
include(CPack)
