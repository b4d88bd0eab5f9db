// SPDX-License-Identifier: Apache-2.0
// Hook library of the qwen3_vl_moe family plugin: plugin.yaml says everything this family needs.
#include "family_without_hooks.h"

MOEREG_FAMILY_WITHOUT_HOOKS("qwen3_vl_moe", "1.0.0")
