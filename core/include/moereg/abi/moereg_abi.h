// SPDX-License-Identifier: Apache-2.0
/* moereg_abi.h - the C types shared by every plugin kind (family hooks, backends).
 *
 * Pure C, fixed-width types, no STL: a plugin built by another compiler, or years later,
 * sees the same bytes. Nothing here throws; errors travel as moereg_status objects that
 * the HOST allocates (host->status_create), so a plugin never frees host memory or vice versa.
 */
#ifndef MOEREG_ABI_H
#define MOEREG_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define MOEREG_NOEXCEPT noexcept
#define MOEREG_EXTERN_C extern "C"
extern "C" {
#else
#define MOEREG_NOEXCEPT
#define MOEREG_EXTERN_C
#endif

#if defined(_WIN32)
#define MOEREG_EXPORT __declspec(dllexport)
#else
#define MOEREG_EXPORT __attribute__((visibility("default")))
#endif

/* The plugin API version a library is compiled with. Bump rule: +1 whenever a slot is
 * APPENDED to any table below or in moereg_hooks.h / moereg_backend.h (tables only grow).
 * MOEREG_PLUGIN_API_MIN moves up only when a slot is removed or its meaning changes.
 * The host accepts MIN <= table.api_version <= VERSION and never calls a slot newer than
 * the table's version. */
#define MOEREG_PLUGIN_API_VERSION 3
#define MOEREG_PLUGIN_API_MIN 1
/* Version history: 1 the first tables; 2 appends create_with_options to moereg_backend_api
 * (backend options as key/value text) and the weight_quant fields to moereg_moe_weights; 3
 * appends the shared expert's F8_E4M3 block scales to moereg_moe_weights (no table slot: a
 * version 3 backend reads them, an older one is given the shared expert in BF16). */

/* Error codes carried by a status. Keep them few. */
typedef enum moereg_code {
  MOEREG_OK = 0,
  MOEREG_INVALID_ARGUMENT = 1,
  MOEREG_UNSUPPORTED = 2,
  MOEREG_OUT_OF_MEMORY = 3,
  MOEREG_IO = 4,
  MOEREG_INTERNAL = 5
} moereg_code;

/* Opaque, host-owned. NULL means success. Fallible slots return one; the host frees it. */
typedef struct moereg_status moereg_status;

/* Element types, spelled as the safetensors format spells them. The numeric values are
 * part of the ABI: append only. */
typedef enum moereg_dtype {
  MOEREG_DTYPE_BOOL = 0,
  MOEREG_DTYPE_U8 = 1,
  MOEREG_DTYPE_I8 = 2,
  MOEREG_DTYPE_I16 = 3,
  MOEREG_DTYPE_I32 = 4,
  MOEREG_DTYPE_I64 = 5,
  MOEREG_DTYPE_F16 = 6,
  MOEREG_DTYPE_BF16 = 7,
  MOEREG_DTYPE_F32 = 8,
  MOEREG_DTYPE_F64 = 9,
  MOEREG_DTYPE_F8_E4M3 = 10,
  MOEREG_DTYPE_F8_E5M2 = 11,
  MOEREG_DTYPE_F8_E8M0 = 12,
  MOEREG_DTYPE_U16 = 13,
  MOEREG_DTYPE_U32 = 14,
  MOEREG_DTYPE_U64 = 15
} moereg_dtype;

/* Bytes per element of a moereg_dtype; 0 for a value this header does not know (a type a
 * newer host added: refuse the tensor). */
static inline size_t moereg_dtype_size(int32_t dtype) {
  switch (dtype) {
    case MOEREG_DTYPE_BOOL:
    case MOEREG_DTYPE_U8:
    case MOEREG_DTYPE_I8:
    case MOEREG_DTYPE_F8_E4M3:
    case MOEREG_DTYPE_F8_E5M2:
    case MOEREG_DTYPE_F8_E8M0:
      return 1;
    case MOEREG_DTYPE_I16:
    case MOEREG_DTYPE_U16:
    case MOEREG_DTYPE_F16:
    case MOEREG_DTYPE_BF16:
      return 2;
    case MOEREG_DTYPE_I32:
    case MOEREG_DTYPE_U32:
    case MOEREG_DTYPE_F32:
      return 4;
    case MOEREG_DTYPE_I64:
    case MOEREG_DTYPE_U64:
    case MOEREG_DTYPE_F64:
      return 8;
    default:
      return 0;
  }
}

#define MOEREG_MAX_RANK 8

/* Where a view's data lives. Host memory is plain process memory (often a read-only
 * mmap of a checkpoint file). Device memory was allocated by a backend's alloc slot. */
typedef enum moereg_memory {
  MOEREG_MEMORY_HOST = 0,
  MOEREG_MEMORY_DEVICE = 1
} moereg_memory;

/* A strided view of someone else's memory; it never owns data. Strides are in ELEMENTS;
 * a row-major contiguous [a, b, c] tensor has strides {b*c, c, 1}. */
typedef struct moereg_tensor_view {
  void* data;       /* NULL marks an absent optional tensor */
  int32_t dtype;    /* moereg_dtype */
  int32_t rank;     /* 0..MOEREG_MAX_RANK */
  int64_t shape[MOEREG_MAX_RANK];
  int64_t strides[MOEREG_MAX_RANK];
  int32_t memory;   /* moereg_memory */
  int32_t reserved; /* zero */
} moereg_tensor_view;

/* A byte sink through which a plugin hands text (JSON, file contents) back to the host
 * without either side freeing the other's memory. write may be called many times. */
typedef struct moereg_sink {
  void* context;
  void (*write)(void* context, const char* data, size_t size);
} moereg_sink;

/* Log levels for host->log; the host maps them onto its logger. */
typedef enum moereg_log_level {
  MOEREG_LOG_TRACE = 0,
  MOEREG_LOG_DEBUG = 1,
  MOEREG_LOG_INFO = 2,
  MOEREG_LOG_WARN = 3,
  MOEREG_LOG_ERROR = 4
} moereg_log_level;

/* Services the host passes to a plugin's entry point. Valid until the library is unloaded. */
typedef struct moereg_host_api {
  uint32_t api_version; /* the host's MOEREG_PLUGIN_API_VERSION */
  /* Make a status; message is copied. code must not be MOEREG_OK. Never returns NULL. */
  moereg_status* (*status_create)(int32_t code, const char* message)MOEREG_NOEXCEPT;
  /* Log one line through the host's logger, prefixed with the plugin name by the host. */
  void (*log)(int32_t level, const char* message)MOEREG_NOEXCEPT;
} moereg_host_api;

#ifdef __cplusplus
} /* extern "C" */

#include <new>
#include <stdexcept>

/* For plugin authors writing C++: the error kinds a slot body throws, and one macro that
 * turns them (and anything else) into a host status, so that no exception crosses the C
 * boundary (the ONNX Runtime pattern). Needs a `host` pointer in scope.
 *   moereg_status* my_slot(...) noexcept { MOEREG_API_BEGIN ... return nullptr; MOEREG_API_END }
 *
 *   throw moereg::plugin::unsupported(...)       -> MOEREG_UNSUPPORTED (a dtype, layout or size
 *                                                   this plugin does not handle: the host may
 *                                                   try another backend)
 *   throw moereg::plugin::invalid_argument(...)  -> MOEREG_INVALID_ARGUMENT (the caller's mistake:
 *                                                   a shape, an id, an unknown option)
 *   std::bad_alloc -> MOEREG_OUT_OF_MEMORY; any other exception -> MOEREG_INTERNAL.
 * The message is the exception's what(), which should name the argument and what was expected. */
namespace moereg::plugin {
struct unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};
using invalid_argument = std::invalid_argument;
}  // namespace moereg::plugin

#define MOEREG_API_BEGIN try {
#define MOEREG_API_END                                                              \
  }                                                                                 \
  catch (const moereg::plugin::unsupported& e) {                                    \
    return host->status_create(MOEREG_UNSUPPORTED, e.what());                       \
  }                                                                                 \
  catch (const std::invalid_argument& e) {                                          \
    return host->status_create(MOEREG_INVALID_ARGUMENT, e.what());                  \
  }                                                                                 \
  catch (const std::bad_alloc&) {                                                   \
    return host->status_create(MOEREG_OUT_OF_MEMORY, "out of memory");             \
  }                                                                                 \
  catch (const std::exception& e) {                                                 \
    return host->status_create(MOEREG_INTERNAL, e.what());                          \
  }                                                                                 \
  catch (...) {                                                                     \
    return host->status_create(MOEREG_INTERNAL, "unknown C++ exception in plugin"); \
  }
#endif

#endif /* MOEREG_ABI_H */
