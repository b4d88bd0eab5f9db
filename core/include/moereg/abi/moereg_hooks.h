// SPDX-License-Identifier: Apache-2.0
/* moereg_hooks.h - the table a family plugin's hook library exports.
 *
 * Hooks do only what plugin.yaml cannot say: read a native config file (Mistral's
 * params.json), write one, or rewrite one tensor's bytes (the per-head row permutation of
 * Mistral's wq/wk). plugin.yaml refers to hooks by name and lists the names the library
 * must export; the host checks both sides agree before calling anything.
 *
 * A library exports one C symbol, moereg_hooks_entry, returning a static moereg_hooks_api.
 * Every slot is noexcept and reports errors as a status made with host->status_create.
 */
#ifndef MOEREG_HOOKS_H
#define MOEREG_HOOKS_H

#include "moereg_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Direction of a tensor transform. DECODE turns the plugin layout's bytes into the bytes
 * of the family's reference layout (hf); ENCODE is its exact inverse. */
typedef enum moereg_direction { MOEREG_DECODE = 0, MOEREG_ENCODE = 1 } moereg_direction;

typedef struct moereg_hooks_api {
  uint32_t api_version; /* MOEREG_PLUGIN_API_VERSION the library was compiled with */
  const char* name;     /* plugin name; must equal plugin.yaml `name` */
  const char* version;  /* library version string */
  const char* const* hooks; /* NULL-terminated list of the hook names this library implements */

  /* Optional (NULL). Read a native config in checkpoint_dir and write an HF-style
   * config.json object (UTF-8 JSON text) to sink. `hook` names which reader. */
  moereg_status* (*read_config)(const char* hook, const char* checkpoint_dir, moereg_sink sink)MOEREG_NOEXCEPT;

  /* Optional (NULL). Turn an HF-style config (JSON text) into the native config file's
   * contents, written to sink; the host writes it atomically under the name plugin.yaml gives. */
  moereg_status* (*write_config)(const char* hook, const char* config_json, moereg_sink sink)MOEREG_NOEXCEPT;

  /* Optional (NULL). Rewrite one tensor: dst has the shape, dtype and byte size of src
   * (both host memory, contiguous, distinct). key is the tensor's name in the layout being
   * decoded or encoded; config_json the HF-style config. ENCODE must invert DECODE exactly. */
  moereg_status* (*transform)(const char* hook, int32_t direction, const char* key, const char* config_json,
                              const moereg_tensor_view* src, moereg_tensor_view* dst)MOEREG_NOEXCEPT;
} moereg_hooks_api;

/* The one entry symbol. Returns NULL if the host's api_version is too old for this library. */
typedef const moereg_hooks_api* (*moereg_hooks_entry_fn)(const moereg_host_api* host);
#define MOEREG_HOOKS_ENTRY_SYMBOL "moereg_hooks_entry"

#ifdef __cplusplus
} /* extern "C" */
#endif

/* The slots never move (versions 1 and 2 have the same hooks table): slot n sits n
 * pointers in, after api_version padded to a pointer. */
#ifdef __cplusplus
#define MOEREG_HOOKS_ASSERT static_assert
#else
#define MOEREG_HOOKS_ASSERT _Static_assert
#endif
#define MOEREG_HOOKS_SLOT_AT(field, n) \
  MOEREG_HOOKS_ASSERT(offsetof(moereg_hooks_api, field) == (n) * sizeof(void*), "moereg_hooks_api." #field " moved")
MOEREG_HOOKS_SLOT_AT(api_version, 0);
MOEREG_HOOKS_SLOT_AT(name, 1);
MOEREG_HOOKS_SLOT_AT(version, 2);
MOEREG_HOOKS_SLOT_AT(hooks, 3);
MOEREG_HOOKS_SLOT_AT(read_config, 4);
MOEREG_HOOKS_SLOT_AT(write_config, 5);
MOEREG_HOOKS_SLOT_AT(transform, 6);
MOEREG_HOOKS_ASSERT(sizeof(moereg_hooks_api) == 7 * sizeof(void*), "moereg_hooks_api: a slot was added without its offset check");
#undef MOEREG_HOOKS_SLOT_AT
#undef MOEREG_HOOKS_ASSERT

#endif /* MOEREG_HOOKS_H */
