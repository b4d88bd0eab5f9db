# SPDX-License-Identifier: Apache-2.0
target_link_libraries(moereg_plugin_mixtral PRIVATE yaml-cpp)  # rotary_qk_rows.h reads the config
