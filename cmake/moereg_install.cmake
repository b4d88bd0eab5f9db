# SPDX-License-Identifier: Apache-2.0
# Installs the binary, plugins, backends, the SDK headers, libmoereg with its API headers and
# a CMake package: find_package(moereg) gives moereg::sdk (the C ABI a plugin or backend
# compiles against) and moereg::moereg (the application API, libmoereg.so).
include(CMakePackageConfigHelpers)
install(DIRECTORY core/include/moereg/abi DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/moereg)
install(DIRECTORY app/include/moereg/app DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/moereg)
install(TARGETS moereg_sdk EXPORT moeregTargets)
install(TARGETS moereg_shared EXPORT moeregTargets LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT moeregTargets NAMESPACE moereg:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/moereg)
configure_package_config_file(cmake/moeregConfig.cmake.in ${PROJECT_BINARY_DIR}/moeregConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/moereg
  PATH_VARS MOEREG_INSTALL_PLUGIN_DIR MOEREG_INSTALL_BACKEND_DIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/moeregConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/moeregConfig.cmake ${PROJECT_BINARY_DIR}/moeregConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/moereg)
