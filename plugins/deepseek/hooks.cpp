// SPDX-License-Identifier: Apache-2.0
// Hook library of the deepseek family plugin: plugin.yaml says everything this family needs.
#include "family_without_hooks.h"

MOEREG_FAMILY_WITHOUT_HOOKS("deepseek", "1.0.0")
