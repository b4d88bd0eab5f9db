# SPDX-License-Identifier: Apache-2.0
target_link_libraries(moereg_plugin_qwen3_5_moe PRIVATE yaml-cpp)  # linear_attn_heads.h reads the config
