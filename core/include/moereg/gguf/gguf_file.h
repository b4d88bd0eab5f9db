// SPDX-License-Identifier: Apache-2.0
// gguf_file.h - a GGUF (v2/v3) file, mapped and validated in full before any tensor is used.
//
// Checked, in file order: magic; version; counts against the bytes left; every string
// length (keys and tensor names <= 65535 bytes, string values <= 16 MiB, arrays <= 8 Mi
// items) inside the file; value and array element types; keys and tensor names non-empty,
// UTF-8 and unique; general.alignment a UINT32 power of two up to 1 MiB; every tensor's
// 1..4 dims all > 0, element count without overflow, known ggml type, ne0 a multiple of
// the block, byte size = count / block * type size, offset aligned; the bytes between the
// tensor infos and the aligned start of the data section all zero; tensors stored in header
// order, each at the aligned end of the one before (the first at the data section's
// start, as llama.cpp requires), inside the file, and the file ending with the last one's
// padding (so a tensor count one short cannot shift the data section). The decoded header
// stays within gguf_header_memory_budget: array items are kept encoded, decoded on demand
// (gguf_value). Each failure throws moereg::error "<file>: gguf header: <what>, expected
// <x>, found <y>".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "moereg/base/mapped_file.h"
#include "moereg/gguf/ggml_type.h"
#include "moereg/gguf/gguf_value.h"
#include "moereg/safetensors/tensor_info.h"

namespace moereg {

inline constexpr std::uint32_t gguf_default_alignment = 32;
inline constexpr std::uint64_t gguf_max_key_length = 65535;       // keys and tensor names
inline constexpr std::uint64_t gguf_max_array_items = 8u << 20;
inline constexpr std::uint64_t gguf_max_string_length = 16 * 1024 * 1024;
inline constexpr std::uint32_t gguf_max_dims = 4;  // GGML_MAX_DIMS
inline constexpr std::uint32_t gguf_max_alignment = 1u << 20;
// What one key or tensor info costs in memory beyond its bytes (nodes, indexes, copies).
inline constexpr std::uint64_t gguf_entry_overhead = 192;

// The memory the decoded header of a file of `file_size` bytes may take: 16 MiB plus twice
// the file's size. Real files use a small part of it (a 10^5-token vocabulary is a few MB);
// a header that needs more (millions of tiny keys or tensor infos) is refused.
std::uint64_t gguf_header_memory_budget(std::uint64_t file_size);

struct gguf_tensor {
  std::string name;
  ggml_type type = ggml_type::F32;
  std::vector<std::uint64_t> ne;     // GGUF order: innermost (contiguous) dimension first
  std::vector<std::int64_t> shape;   // PyTorch order: ne reversed
  std::uint64_t offset = 0;          // from the start of the data section
  std::uint64_t nbytes = 0;

  std::uint64_t numel() const;
  // The element dtype for F32/F16/BF16/F64/I8..I64; empty for block-quantized types,
  // whose bytes moereg carries as opaque blocks.
  std::optional<moereg::dtype> dtype() const { return ggml_traits(type).dtype; }
  bool quantized() const { return !dtype(); }
  // The same tensor described the safetensors way (offsets from the data section).
  // Only for non-quantized types; throws moereg::error naming the tensor otherwise.
  tensor_info as_tensor_info() const;
};

using gguf_metadata = std::vector<std::pair<std::string, gguf_value>>;

struct gguf_header {
  std::uint32_t version = 3;
  std::uint32_t alignment = gguf_default_alignment;
  gguf_metadata metadata;             // in file order
  std::vector<gguf_tensor> tensors;   // in file order
  std::uint64_t data_offset = 0;      // absolute offset of the data section
};

// Validate the file image `bytes[0, size)` and return its header. `where` names the file.
gguf_header parse_gguf_header(const std::byte* bytes, std::uint64_t size, std::string_view where);

class gguf_file {
 public:
  // Maps and validates. Throws moereg::error on any problem.
  explicit gguf_file(const std::string& path);

  const std::string& path() const { return file_.path(); }
  std::uint32_t version() const { return header_.version; }
  std::uint32_t alignment() const { return header_.alignment; }
  std::uint64_t data_offset() const { return header_.data_offset; }
  const gguf_metadata& metadata() const { return header_.metadata; }
  const std::vector<gguf_tensor>& tensors() const { return header_.tensors; }

  // nullptr when absent.
  const gguf_value* find(std::string_view key) const;
  const gguf_tensor* find_tensor(std::string_view name) const;

  // Typed metadata: nullopt when the key is absent; moereg::error naming the key when it
  // holds another type.
  std::optional<std::uint64_t> get_uint(std::string_view key) const;  // any integer type, >= 0
  std::optional<double> get_float(std::string_view key) const;        // f32 or f64
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;

  // A tensor's first byte inside the map.
  const std::byte* data(const gguf_tensor& t) const { return file_.data() + header_.data_offset + t.offset; }
  const mapped_file& file() const { return file_; }

 private:
  mapped_file file_;
  gguf_header header_;
  std::unordered_map<std::string_view, std::size_t> keys_;
  std::unordered_map<std::string_view, std::size_t> names_;
};

// MoE sizes of a GGUF model: from `{arch}.expert_count`, `{arch}.expert_used_count`,
// `{arch}.embedding_length`, `{arch}.expert_feed_forward_length`, falling back to the
// shapes of `blk.N.ffn_{gate,up}_exps.weight` (or fused `ffn_gate_up_exps`). Metadata and
// shapes that disagree are an error naming both; top-k has no fallback.
struct gguf_moe_dims {
  std::string arch;
  std::optional<std::uint64_t> experts, hidden, intermediate, top_k;
};
gguf_moe_dims read_gguf_moe_dims(const gguf_file& file);

}  // namespace moereg
