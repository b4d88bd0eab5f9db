// SPDX-License-Identifier: Apache-2.0
/* moereg_backend.h - the table a fused-MoE compute backend exports.
 *
 * A backend library (libmoereg_backend_<name>[-<variant>].so) exports one C symbol,
 * moereg_backend_entry, returning a static moereg_backend_api. The host calls probe first
 * (cheap: is the hardware here, how well does it suit), then create with the experts of
 * one MoE layer, then forward any number of times, then destroy.
 *
 * Routing (which experts a token goes to, and with what weight) is computed by the host
 * from the family's declared routing, identical for every backend. A backend MAY also
 * implement the optional `route` slot to do the same math on its device; it must give the
 * same ids (ties aside) and weights within float32 rounding.
 *
 * Unload order: destroy every moereg_backend before the library is unloaded; the host
 * keeps the library loaded for the life of the process otherwise.
 *
 * Table versions: a version 1 table ends at get_extension; version 2 appends
 * create_with_options. The host reads `api_version` first and never touches a slot past the
 * table's version, so version 1 backends keep loading. The static_asserts at the end pin
 * the offset of every slot of each version.
 */
#ifndef MOEREG_BACKEND_H
#define MOEREG_BACKEND_H

#include "moereg_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a layer turns router logits into top-k ids and weights. Every family's routing is
 * one setting of these fields (see docs/yaml-reference.md, `routing:`). */
typedef enum moereg_scoring {
  MOEREG_SCORING_SOFTMAX = 0, /* p = softmax(logits) over all E, in float32 */
  MOEREG_SCORING_SIGMOID = 1  /* p = sigmoid(logits) */
} moereg_scoring;

typedef enum moereg_group_score {
  MOEREG_GROUP_SCORE_NONE = 0,     /* no group limiting */
  MOEREG_GROUP_SCORE_MAX = 1,      /* group score = max selection score in the group (DeepSeek-V2) */
  MOEREG_GROUP_SCORE_TOP2_SUM = 2  /* group score = sum of its two largest selection scores (V3) */
} moereg_group_score;

typedef struct moereg_routing_params {
  int32_t num_experts;          /* E */
  int32_t top_k;                /* K */
  int32_t scoring;              /* moereg_scoring */
  int32_t logits_in_f32;        /* 1: logits in float32; 0: rounded to the activation dtype first */
  int32_t n_group;              /* groups of consecutive experts; 1 or 0 = no grouping */
  int32_t topk_group;           /* groups kept */
  int32_t group_score;          /* moereg_group_score */
  int32_t renormalize;          /* 1: w /= (sum w + renorm_eps) after selection */
  float renorm_eps;             /* 0 for qwen/mixtral, 1e-20 for DeepSeek-V3 */
  float routed_scaling_factor;  /* multiplies the final weights; 1 when absent */
  moereg_tensor_view router;    /* [E, H] router weight */
  moereg_tensor_view router_bias; /* [E] score-correction bias added for SELECTION only; data NULL if none */
} moereg_routing_params;

/* How 4-bit experts are coded (moereg_moe_weights.weight_quant, API 2). Both kinds store
 * w13 and w2 as U8 [E, rows, ceil(cols / 2)] (row stride may be larger): element 2j of a row
 * is the low nibble of byte j, 2j + 1 the high one. Their F32 scales are per output row and
 * group of g inputs: w13_scale [E, 2I, ceil(H/g)], w2_scale [E, H, ceil(I/g)], scale_block
 * {1, g} (g >= the row length for one scale per row). */
typedef enum moereg_weight_quant {
  MOEREG_WEIGHT_QUANT_NONE = 0,  /* the dtype of w13 and w2 says it all (F8_E4M3: block scales) */
  MOEREG_WEIGHT_QUANT_INT4 = 1,  /* symmetric int4: w = (q - 8) * s (GPTQ sym, compressed-tensors pack-quantized) */
  MOEREG_WEIGHT_QUANT_MXFP4 = 2, /* E2M1: q 0..7 = 0, .5, 1, 1.5, 2, 3, 4, 6; 8..15 negated; w = e2m1(q) * s */
  /* ggml blocks (GGUF), scales inside the blocks, no scale views: w13 and w2 as U8
   * [E, rows, cols / block * block bytes] (row stride may be larger), cols whole blocks; the
   * ggml type ids (llama.cpp's: 8 Q8_0, 2 Q4_0, 12 Q4_K, 14 Q6_K, ...) in quant_types. A
   * backend that does not read a type refuses it at create. */
  MOEREG_WEIGHT_QUANT_GGML = 3
} moereg_weight_quant;

/* moereg_moe_weights.quant_types with MOEREG_WEIGHT_QUANT_GGML: w13's ggml type in bits
 * 0-15, w2's in bits 16-31 (llama.cpp files often store down in a wider type than gate/up). */
#define MOEREG_GGML_TYPES(w13_type, w2_type) ((int32_t)(((uint32_t)(w2_type) << 16) | ((uint32_t)(w13_type) & 0xFFFFu)))

/* The experts of one MoE layer, in the backend layout (transformers_v5 order, K contiguous).
 * Views point at memory the HOST owns, typically mapped checkpoint files in host memory;
 * they stay valid and unchanged until destroy. A backend that wants another packing copies
 * at create. Views with memory = MOEREG_MEMORY_DEVICE are in the backend's device memory
 * (options->device; a framework's parameters already on the GPU): a backend that reads them
 * there reads them in place and never frees them; one that cannot refuses at create with
 * MOEREG_UNSUPPORTED, so that `auto` moves on to the next backend. */
typedef struct moereg_moe_weights {
  int64_t num_experts;  /* E */
  int64_t hidden;       /* H */
  int64_t intermediate; /* I */
  moereg_tensor_view w13; /* [E, 2I, H]: rows [0, I) gate, rows [I, 2I) up. BF16, F16, F32 or F8_E4M3 */
  moereg_tensor_view w2;  /* [E, H, I] down */
  /* Block scales for F8_E4M3 weights (data NULL otherwise), F32, multiplier form (w = q * s):
   * w13_scale [E, 2*ceil(I/b0), ceil(H/b1)], gate rows and up rows each on their own grid
   * (scale rows [0, ceil(I/b0)) gate, the rest up; the same as ceil(2I/b0) rows whenever b0
   * divides I), and w2_scale [E, ceil(H/b0), ceil(I/b1)]. The last block of a dimension may
   * be partial. Per-channel scales are b0 = 1, b1 >= max(H, I). */
  moereg_tensor_view w13_scale;
  moereg_tensor_view w2_scale;
  int64_t scale_block[2]; /* {b0, b1} rows, columns per scale; {0, 0} without scales */
  /* Shared expert (data NULL when the family has none): dense gated MLP of width Is. */
  int64_t shared_intermediate;   /* Is */
  moereg_tensor_view shared_w13; /* [2*Is, H]: rows [0, Is) gate, [Is, 2*Is) up. BF16, F16, F32 or (API 3) F8_E4M3 */
  moereg_tensor_view shared_w2;  /* [H, Is] */
  moereg_tensor_view shared_gate; /* [1, H]: output += sigmoid(x . g) * shared(x); data NULL: ungated */
  /* ---- API 2 (a version 1 backend never sees weights that need these) ---- */
  int32_t weight_quant;   /* moereg_weight_quant of w13 and w2; 0 = none */
  int32_t quant_types;    /* MOEREG_GGML_TYPES with MOEREG_WEIGHT_QUANT_GGML; zero otherwise */
  /* ---- API 3 (the host gives a version 1 or 2 backend a BF16 shared expert instead) ---- */
  /* F32 block scales of an F8_E4M3 shared expert (data NULL otherwise), multiplier form, on
   * scale_block's grid like the experts' (DeepSeek-V3 and R1 ship their shared expert in FP8
   * with the routed experts' 128 x 128 blocks): shared_w13_scale [2*ceil(Is/b0), ceil(H/b1)]
   * (gate rows, then up rows, each on its own grid), shared_w2_scale [ceil(H/b0), ceil(Is/b1)]. */
  moereg_tensor_view shared_w13_scale;
  moereg_tensor_view shared_w2_scale;
} moereg_moe_weights;

typedef struct moereg_backend_options {
  int32_t threads;   /* CPU threads to use; 0 = all cores */
  int32_t device;    /* device ordinal for accelerators */
  int32_t reserved[6];
} moereg_backend_options;

/* One backend option (API 2): a key the backend documents and its value, both NUL-terminated
 * text (the CLI's `--backend-option key=value`). Keys and values are the backend's own: it
 * refuses an unknown key or a bad value with MOEREG_INVALID_ARGUMENT naming the key and what
 * it accepts. Tuning knobs live here rather than in environment variables. */
typedef struct moereg_backend_option {
  const char* key;
  const char* value;
} moereg_backend_option;

typedef struct moereg_backend moereg_backend; /* opaque, backend-owned */

typedef struct moereg_backend_api {
  uint32_t api_version; /* MOEREG_PLUGIN_API_VERSION the backend was compiled with */
  const char* name;     /* "cpu", "cuda" */
  const char* version;  /* the backend's own version string */

  /* Required. Score 0..100 for this machine; 0 = cannot run here, with the reason written
   * to `reason` (NUL-terminated, at most reason_size bytes). Must be cheap and not throw. */
  int32_t (*probe)(char* reason, size_t reason_size)MOEREG_NOEXCEPT;

  /* Required. Take the experts of one layer and the routing. *out receives the handle.
   * `weights` and `routing` are copied; the tensors they view must outlive the handle. */
  moereg_status* (*create)(const moereg_moe_weights* weights, const moereg_routing_params* routing,
                           const moereg_backend_options* options, moereg_backend** out)MOEREG_NOEXCEPT;

  /* Required. out[T, H] (F32) = sum_k topk_weights[t, k] * expert_{topk_ids[t, k]}(x[t]) + shared.
   * x: [T, H] F32 or BF16; topk_ids: [T, K] I32 or I64; topk_weights: [T, K] F32.
   * All views in the same memory (host, or this backend's device memory). One call at a
   * time per handle; allocates nothing per call on the hot path. */
  moereg_status* (*forward)(moereg_backend* backend, const moereg_tensor_view* x,
                            const moereg_tensor_view* topk_ids, const moereg_tensor_view* topk_weights,
                            moereg_tensor_view* out)MOEREG_NOEXCEPT;

  /* Required. Frees everything create made. NULL is a no-op. */
  void (*destroy)(moereg_backend* backend)MOEREG_NOEXCEPT;

  /* Optional (NULL): route on the device. ids [T, K] I32/I64, weights [T, K] F32 outputs. */
  moereg_status* (*route)(moereg_backend* backend, const moereg_tensor_view* x, moereg_tensor_view* topk_ids,
                          moereg_tensor_view* topk_weights)MOEREG_NOEXCEPT;

  /* Optional (NULL): device memory, for callers that keep activations on the device
   * (benchmarks, engines). kind: 0 host->device, 1 device->host, 2 device->device. */
  moereg_status* (*alloc)(moereg_backend* backend, size_t bytes, void** ptr)MOEREG_NOEXCEPT;
  void (*free)(moereg_backend* backend, void* ptr)MOEREG_NOEXCEPT;
  moereg_status* (*copy)(moereg_backend* backend, void* dst, const void* src, size_t bytes, int32_t kind)MOEREG_NOEXCEPT;
  moereg_status* (*synchronize)(moereg_backend* backend)MOEREG_NOEXCEPT;

  /* Optional (NULL): a JSON object describing the handle (kernel chosen, ISA, load time,
   * bytes held, load bandwidth) written to sink. */
  moereg_status* (*describe)(moereg_backend* backend, moereg_sink sink)MOEREG_NOEXCEPT;

  /* Optional (NULL): vendor extras by name, or NULL if unknown. */
  void* (*get_extension)(const char* name)MOEREG_NOEXCEPT;

  /* ---- API 2 ---- */

  /* Optional (NULL: the backend takes no options). create, with `count` backend options
   * (`options_kv` may be NULL when count is 0; the array and its strings are valid during
   * the call only). A later key overrides an earlier one. */
  moereg_status* (*create_with_options)(const moereg_moe_weights* weights, const moereg_routing_params* routing,
                                        const moereg_backend_options* options, const moereg_backend_option* options_kv,
                                        size_t count, moereg_backend** out)MOEREG_NOEXCEPT;
} moereg_backend_api;

/* The one entry symbol. Returns NULL if the host's api_version is too old for this backend. */
typedef const moereg_backend_api* (*moereg_backend_entry_fn)(const moereg_host_api* host);
#define MOEREG_BACKEND_ENTRY_SYMBOL "moereg_backend_entry"

#ifdef __cplusplus
} /* extern "C" */
#endif

/* The table's slots never move: slot n (counting from name = 1) sits n pointers in, after
 * api_version padded to a pointer. A version 1 table is the first 14 slots. */
#ifdef __cplusplus
#define MOEREG_STATIC_ASSERT static_assert
#else
#define MOEREG_STATIC_ASSERT _Static_assert
#endif
#define MOEREG_BACKEND_SLOT_AT(field, n) \
  MOEREG_STATIC_ASSERT(offsetof(moereg_backend_api, field) == (n) * sizeof(void*), "moereg_backend_api." #field " moved")
MOEREG_BACKEND_SLOT_AT(api_version, 0);
MOEREG_BACKEND_SLOT_AT(name, 1);
MOEREG_BACKEND_SLOT_AT(version, 2);
MOEREG_BACKEND_SLOT_AT(probe, 3);
MOEREG_BACKEND_SLOT_AT(create, 4);
MOEREG_BACKEND_SLOT_AT(forward, 5);
MOEREG_BACKEND_SLOT_AT(destroy, 6);
MOEREG_BACKEND_SLOT_AT(route, 7);
MOEREG_BACKEND_SLOT_AT(alloc, 8);
MOEREG_BACKEND_SLOT_AT(free, 9);
MOEREG_BACKEND_SLOT_AT(copy, 10);
MOEREG_BACKEND_SLOT_AT(synchronize, 11);
MOEREG_BACKEND_SLOT_AT(describe, 12);
MOEREG_BACKEND_SLOT_AT(get_extension, 13); /* the last slot of version 1 */
MOEREG_BACKEND_SLOT_AT(create_with_options, 14); /* version 2 */
MOEREG_STATIC_ASSERT(sizeof(moereg_backend_api) == 15 * sizeof(void*), "moereg_backend_api: a slot was added without its offset check");
MOEREG_STATIC_ASSERT(sizeof(moereg_backend_option) == 2 * sizeof(void*), "moereg_backend_option changed");
MOEREG_STATIC_ASSERT(sizeof(moereg_backend_options) == 32, "moereg_backend_options changed");
#undef MOEREG_BACKEND_SLOT_AT

#endif /* MOEREG_BACKEND_H */
