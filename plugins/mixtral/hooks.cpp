// Hook library of the mixtral family plugin: plugin.yaml says everything this family needs.
#include "family_without_hooks.h"

MOEREG_FAMILY_WITHOUT_HOOKS("mixtral", "1.0.0")
