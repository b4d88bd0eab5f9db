# SPDX-License-Identifier: Apache-2.0
target_link_libraries(moereg_plugin_mistral PRIVATE yaml-cpp)  # reads params.json
