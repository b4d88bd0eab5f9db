# SPDX-License-Identifier: Apache-2.0
# Installs the binary, plugins, backends, SDK headers and a CMake package, so a vendor can
# build a plugin out of tree with find_package(moereg) and target moereg::sdk.
include(CMakePackageConfigHelpers)
install(DIRECTORY core/include/moereg/abi DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/moereg)
install(TARGETS moereg_sdk EXPORT moeregTargets)
install(EXPORT moeregTargets NAMESPACE moereg:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/moereg)
configure_package_config_file(cmake/moeregConfig.cmake.in ${PROJECT_BINARY_DIR}/moeregConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/moereg
  PATH_VARS MOEREG_INSTALL_PLUGIN_DIR MOEREG_INSTALL_BACKEND_DIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/moeregConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/moeregConfig.cmake ${PROJECT_BINARY_DIR}/moeregConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/moereg)
