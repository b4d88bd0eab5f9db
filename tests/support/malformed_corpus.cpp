// SPDX-License-Identifier: Apache-2.0
#include "malformed_corpus.h"

#include <cstdint>
#include <cstring>
#include <utility>

namespace moereg::test {

namespace {

// GGUF bytes built field by field, independently of moereg's writer; mark() records where
// each field starts so that the file can be cut inside every one of them.
struct image {
  std::string s;
  std::vector<std::pair<std::size_t, std::string>> fields;

  image& mark(const std::string& label) {
    fields.emplace_back(s.size(), label);
    return *this;
  }
  template <class T>
  image& put(T v, const std::string& label = "") {
    if (!label.empty()) mark(label);
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s.append(b, sizeof(T));
    return *this;
  }
  image& str(const std::string& v, const std::string& label = "") {
    put<std::uint64_t>(v.size(), label.empty() ? "" : label + " length");
    if (!label.empty() && !v.empty()) mark(label + " bytes");
    s += v;
    return *this;
  }
  image& head(std::uint64_t n_tensors, std::uint64_t n_kv, std::uint32_t version = 3) {
    mark("magic");
    s += "GGUF";
    put<std::uint32_t>(version, "version");
    put<std::uint64_t>(n_tensors, "tensor count");
    return put<std::uint64_t>(n_kv, "metadata count");
  }
  image& key(const std::string& k, std::uint32_t type) {
    str(k, "key '" + k + "'");
    return put<std::uint32_t>(type, "key '" + k + "' type");
  }
  image& kv_u32(const std::string& k, std::uint32_t v) {
    key(k, 4);
    return put<std::uint32_t>(v, "key '" + k + "' value");
  }
  image& kv_str(const std::string& k, const std::string& v) {
    key(k, 8);
    return str(v, "key '" + k + "' value");
  }
  image& kv_bool(const std::string& k, std::uint8_t v) {
    key(k, 7);
    return put<std::uint8_t>(v, "key '" + k + "' value");
  }
  image& array_head(const std::string& k, std::uint32_t elem, std::uint64_t count) {
    key(k, 9);
    put<std::uint32_t>(elem, "key '" + k + "' element type");
    return put<std::uint64_t>(count, "key '" + k + "' count");
  }
  image& tensor(const std::string& name, const std::vector<std::uint64_t>& ne, std::uint32_t type, std::uint64_t offset) {
    const std::string t = "tensor '" + name + "'";
    str(name, t + " name");
    put<std::uint32_t>(static_cast<std::uint32_t>(ne.size()), t + " n_dims");
    for (std::size_t d = 0; d < ne.size(); ++d) put<std::uint64_t>(ne[d], t + " ne[" + std::to_string(d) + "]");
    put<std::uint32_t>(type, t + " type");
    return put<std::uint64_t>(offset, t + " offset");
  }
  image& pad(std::size_t a = 32) {
    if (s.size() % a) mark("padding");
    s.append((a - s.size() % a) % a, '\0');
    return *this;
  }
  image& data(std::size_t n) {
    mark("tensor data");
    for (std::size_t i = 0; i < n; ++i) s += static_cast<char>((i * 7 + 3) & 0xFF);
    return *this;
  }
};

constexpr std::uint32_t F32 = 0, F16 = 1, Q4_K = 12, F64 = 28;

// The valid file, its parts parameterised for the variants below.
struct base_options {
  std::uint64_t tensor_count = 2;
  std::uint64_t second_offset = 128;  // token_embd.weight is 128 bytes at 0
  std::size_t extra_data = 0;
};

image base(const base_options& o = {}) {
  image b;
  b.head(o.tensor_count, 5);
  b.kv_str("general.architecture", "qwen3moe").kv_u32("general.alignment", 32).kv_bool("general.flag", 1);
  b.array_head("tokenizer.ggml.tokens", 8, 3).str("a", "token 0").str("<0x0A>", "token 1").str("", "token 2");
  b.array_head("tokenizer.ggml.scores", 6, 2).put<float>(0.5f, "score 0").put<float>(-1.0f, "score 1");
  b.tensor("token_embd.weight", {8, 4}, F32, 0).tensor("blk.0.ffn_gate_exps.weight", {16, 2, 4}, F16, o.second_offset);
  return b.pad().data(128 + 256 + o.extra_data);
}

// A header with one tensor of `ne` and `type` at `offset`, then `data` bytes.
std::string one_tensor(const std::string& name, const std::vector<std::uint64_t>& ne, std::uint32_t type,
                       std::uint64_t offset, std::size_t data) {
  image b;
  b.head(1, 1).kv_str("general.architecture", "qwen3moe").tensor(name, ne, type, offset).pad();
  return b.data(data).s;
}

// Three F32 tensors of 1 element, the first named `first_name` (its length moves where the
// second info ends against the alignment), written with a tensor count of two.
std::string one_short(const std::string& first_name) {
  image b;
  b.head(2, 1).kv_str("general.architecture", "qwen3moe");
  b.tensor(first_name, {1}, F32, 0).tensor("t1", {1}, F32, 32).tensor("t2", {1}, F32, 64).pad();
  return b.data(64 + 4).s;
}

}  // namespace

std::string valid_gguf_image() { return base().s; }

std::vector<malformed_file> malformed_gguf_corpus() {
  std::vector<malformed_file> out;
  auto add = [&](const std::string& name, std::string bytes, const std::string& expect) {
    out.push_back({name + ".gguf", std::move(bytes), expect});
  };

  // Truncation inside every field of the valid file (in its middle; at its start for 1-byte
  // fields). Cut in the header: the field runs past the end; in the padding or the data: a
  // tensor does.
  const image full = base();
  std::size_t infos_end = full.s.size();
  for (const auto& [at, label] : full.fields)
    if (label == "padding" || label == "tensor data") {
      infos_end = at;
      break;
    }
  for (std::size_t i = 0; i < full.fields.size(); ++i) {
    std::size_t begin = full.fields[i].first;
    std::size_t end = i + 1 < full.fields.size() ? full.fields[i + 1].first : full.s.size();
    std::size_t cut = begin + (end - begin) / 2;
    std::string label = full.fields[i].second;
    for (auto& ch : label)
      if (ch == ' ' || ch == '\'' || ch == '[' || ch == ']' || ch == '.') ch = '_';
    // A count checked against the bytes left may be what is refused first.
    out.push_back({"truncated_in_" + std::to_string(i) + "_" + label + ".gguf", full.s.substr(0, cut),
                   cut < infos_end ? "runs past the end of the file" : "to end within the file",
                   cut < infos_end ? "needs more bytes than the file has" : ""});
  }
  add("empty", "", "runs past the end of the file");

  // Magic and version.
  add("bad_magic", "GGUX" + full.s.substr(4), "magic, expected 'GGUF'");
  add("version_4", image().head(0, 0, 4).s, "version, expected 3");
  add("version_big_endian", image().head(0, 0, 0x03000000u).s, "big-endian");

  // Huge counts and lengths.
  add("huge_tensor_count", image().head(~0ull, 0).data(64).s, "tensor count 18446744073709551615 needs more bytes");
  add("huge_metadata_count", image().head(0, 1ull << 60).data(64).s, "metadata count 1152921504606846976 needs more bytes");
  add("huge_key_length", image().head(0, 1).put<std::uint64_t>(~0ull).data(64).s, "key 0 length, expected at most 65535");
  add("huge_string_value", image().head(0, 1).key("general.name", 8).put<std::uint64_t>(1ull << 62).data(64).s,
      "key 'general.name' length, expected at most 16777216");
  add("string_value_past_end", image().head(0, 1).key("general.name", 8).put<std::uint64_t>(1000).data(10).s,
      "key 'general.name' at byte");
  add("huge_array_count", image().head(0, 1).array_head("scores", F32, 1ull << 40).data(64).s,
      "key 'scores': array count, expected at most 8388608");
  add("array_count_past_end", image().head(0, 1).array_head("tokens", 8, 1u << 20).data(100).s,
      "array count 1048576 of STRING needs more bytes than the file has");
  add("array_string_item_past_end",
      image().head(0, 1).array_head("tokens", 8, 2).str("ok").put<std::uint64_t>(500).data(4).s,
      "key 'tokens' item 1 at byte");
  add("huge_tensor_name_length", image().head(1, 0).put<std::uint64_t>(1ull << 63).data(64).s,
      "tensor 0 name length, expected at most 65535");

  // Nested arrays, unknown value types, bad BOOLs.
  add("nested_array", image().head(0, 1).array_head("nested", 9, 1).data(16).s, "arrays do not nest");
  add("unknown_value_type", image().head(0, 1).key("general.thing", 13).data(8).s,
      "key 'general.thing': value type, expected 0..12, found 13");
  add("unknown_value_type_max", image().head(0, 1).key("general.thing", 0xFFFFFFFFu).data(8).s,
      "value type, expected 0..12, found 4294967295");
  add("unknown_array_element_type", image().head(0, 1).array_head("arr", 77, 1).data(8).s,
      "key 'arr': array element type, expected 0..12, found 77");
  add("bool_value_2", image().head(0, 1).kv_bool("general.flag", 2).s, "BOOL value, expected 0 or 1, found 2");
  add("bool_array_item_7", image().head(0, 1).array_head("flags", 7, 3).put<std::uint8_t>(1).put<std::uint8_t>(0).put<std::uint8_t>(7).s,
      "key 'flags' item 2: BOOL value");

  // Alignment.
  add("alignment_0", image().head(0, 1).kv_u32("general.alignment", 0).s, "key 'general.alignment', expected a power of two");
  add("alignment_48", image().head(0, 1).kv_u32("general.alignment", 48).s, "general.alignment', expected a power of two from 1 to 1048576, found 48");
  add("alignment_huge", image().head(0, 1).kv_u32("general.alignment", 1u << 31).s, "found 2147483648");
  add("alignment_string", image().head(0, 1).kv_str("general.alignment", "32").s, "expected UINT32, found STRING");

  // Tensor infos.
  add("n_dims_0", one_tensor("w", {}, F32, 0, 32), "tensor 'w': n_dims, expected 1 to 4, found 0");
  add("n_dims_5", one_tensor("w", {1, 1, 1, 1, 1}, F32, 0, 32), "tensor 'w': n_dims, expected 1 to 4, found 5");
  add("dim_zero", one_tensor("w", {4, 0}, F32, 0, 32), "tensor 'w': ne[1], expected 1 to 2^63-1, found 0");
  add("dim_past_int64", one_tensor("w", {1ull << 63}, F32, 0, 32), "tensor 'w': ne[0], expected 1 to 2^63-1");
  add("dims_product_overflows", one_tensor("w", {1ull << 32, 1ull << 32}, F32, 0, 32), "tensor 'w': element count");
  add("dims_product_overflows_4d", one_tensor("w", {1ull << 20, 1ull << 20, 1ull << 20, 1ull << 20}, F32, 0, 32),
      "the product overflows");
  add("byte_size_overflows", one_tensor("w", {1ull << 62}, F64, 0, 32), "tensor 'w': byte size");
  add("unknown_ggml_type_4", one_tensor("w", {32}, 4, 0, 128), "tensor 'w': ggml type");
  add("unknown_ggml_type_max", one_tensor("w", {32}, 0xFFFFFFFFu, 0, 128), "found 4294967295");
  add("rows_not_whole_blocks", one_tensor("w", {48, 2}, Q4_K, 0, 1024), "multiple of its block size 256");

  // Offsets.
  add("offset_misaligned", one_tensor("w", {4}, F32, 8, 64), "tensor 'w': offset, expected a multiple of the alignment 32, found 8");
  add("offset_out_of_file", one_tensor("w", {4}, F32, 1ull << 40, 64), "tensor 'w': offset, expected 0");
  add("offset_near_2_64", one_tensor("w", {4}, F32, ~0ull - 31, 64), "found 18446744073709551584 (a gap of");
  add("data_past_end", one_tensor("w", {16}, F32, 0, 60), "tensor 'w': data [");
  add("offsets_overlap", base({.second_offset = 96}).s, "(it overlaps tensor 'token_embd.weight')");
  add("offsets_overlap_same", base({.second_offset = 0}).s, "found 0 (it overlaps");
  add("offsets_gap", base({.second_offset = 160, .extra_data = 32}).s, "found 160 (a gap of 32 bytes)");

  // Names.
  add("key_empty", image().head(0, 1).kv_u32("", 1).s, "key 0, expected a non-empty string");
  add("key_duplicate", image().head(0, 2).kv_u32("x.y", 1).kv_u32("x.y", 2).s, "key 'x.y', expected each key once");
  add("key_not_utf8", image().head(0, 1).kv_u32("general.\xff", 1).s, "key 0 'general.\\xff', expected a UTF-8 name");
  add("key_utf8_overlong", image().head(0, 1).kv_u32("a\xc0\xafz", 1).s, "byte 0xc0 at offset 1");
  add("key_utf8_surrogate", image().head(0, 1).kv_u32("a\xed\xa0\x80", 1).s, "byte 0xed at offset 1");
  add("key_utf8_cut", image().head(0, 1).kv_u32("ab\xe2\x82", 1).s, "byte 0xe2 at offset 2");
  add("key_too_long", image().head(0, 1).put<std::uint64_t>(70000).s + std::string(70010, 'k'), "key 0 length, expected at most 65535 bytes");
  add("tensor_name_empty", one_tensor("", {4}, F32, 0, 32), "tensor 0 name, expected a non-empty string");
  add("tensor_name_duplicate", image().head(2, 0).tensor("w", {8}, F32, 0).tensor("w", {8}, F32, 32).pad().data(64).s,
      "tensor 'w', expected each name once");
  add("tensor_name_not_utf8", one_tensor("blk.0.\xfe.weight", {8}, F32, 0, 32), "tensor 0 name 'blk.0.\\xfe.weight', expected a UTF-8 name");
  add("tensor_name_past_u10ffff", one_tensor("w\xf4\x90\x80\x80", {8}, F32, 0, 32), "byte 0xf4 at offset 1");

  // The data section's start and end.
  {
    image b = base();
    std::size_t pad_at = 0;
    for (const auto& [at, label] : b.fields)
      if (label == "padding") pad_at = at;
    b.s[pad_at + 1] = 1;
    add("padding_not_zero", b.s, "padding after the tensor infos: byte " + std::to_string(pad_at + 1));
  }
  add("trailing_bytes", base().s + std::string(32, '\0'), "data section: 32 bytes after the padded end of the last tensor");
  add("trailing_bytes_no_tensors", image().head(0, 1).kv_u32("general.alignment", 32).pad().data(64).s,
      "data section: 64 bytes after the tensor infos");
  add("tensor_count_short", base({.tensor_count = 1}).s, "(is the tensor count short?)");
  // The second info's end at each offset against the alignment: with padding after it
  // (refused as non-zero), or aligned (refused as trailing bytes).
  for (std::size_t len = 1; len <= 32; ++len)
    add("tensor_count_short_" + std::to_string(len), one_short(std::string(len, 'n')), "(is the tensor count short?)");

  // Memory: 150000 tiny keys decode to ~30 MB from a 2.7 MB file; the budget is 16 MiB + 2x.
  {
    image b;
    const std::uint64_t n = 150000;
    b.head(0, n);
    for (std::uint64_t i = 0; i < n; ++i) {
      std::string k = "k";
      for (std::uint64_t v = i; v; v /= 26) k += static_cast<char>('a' + v % 26);
      b.s += std::string("\x00\x00\x00\x00\x00\x00\x00\x00", 8);
      b.s[b.s.size() - 8] = static_cast<char>(k.size());
      b.s += k;
      b.s += std::string("\x00\x00\x00\x00\x05", 5);  // UINT8 5
    }
    add("metadata_memory_budget", b.s, "needs more memory than moereg allows");
  }
  return out;
}

std::vector<malformed_file> malformed_safetensors_corpus() {
  auto image_of = [](const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
    return out + header + data;
  };
  auto one = [&](const std::string& fields, const std::string& data) { return image_of(R"({"t":{)" + fields + "}}", data); };
  std::vector<malformed_file> out;
  auto add = [&](const std::string& name, std::string bytes, const std::string& expect) {
    out.push_back({name + ".safetensors", std::move(bytes), expect});
  };
  std::string big_len(8, '\0');
  for (int i = 0; i < 8; ++i) big_len[static_cast<std::size_t>(i)] = static_cast<char>((100'000'001ull >> (8 * i)) & 0xFF);
  std::string past = image_of("{}", "");
  past[0] = 100;
  const std::string u8t = R"("dtype":"U8","shape":[1],"data_offsets":[0,1])";
  add("shorter_than_8_bytes", "abc", "expected at least 8");
  add("header_length_over_limit", big_len + "{}", "exceeds the limit of 100000000");
  add("header_length_past_end", past, "runs past the end of the file");
  add("header_not_utf8", image_of("{\"\xff\":1}", ""), "UTF-8");
  add("header_not_json", image_of("{nope", ""), "invalid JSON");
  add("header_not_object", image_of("[1,2]", ""), "JSON object");
  add("duplicate_tensor", image_of("{\"a\":{" + u8t + "},\"a\":{" + u8t + "}}", "x"), "duplicate key \"a\"");
  add("unknown_dtype", one(R"("dtype":"F7","shape":[1],"data_offsets":[0,1])", "x"), "unknown dtype 'F7'");
  add("negative_shape", one(R"("dtype":"U8","shape":[-1],"data_offsets":[0,0])", ""), "non-negative");
  add("fractional_shape", one(R"("dtype":"U8","shape":[1.5],"data_offsets":[0,1])", "x"), "non-negative integers");
  add("element_count_overflows", one(R"("dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8])", "12345678"),
      "overflows");
  add("byte_size_overflows", one(R"("dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8])", "12345678"), "overflows");
  add("offsets_reversed", one(R"("dtype":"U8","shape":[0],"data_offsets":[4,0])", "1234"), "reversed");
  add("span_disagrees_with_shape", one(R"("dtype":"BF16","shape":[2,2],"data_offsets":[0,6])", "123456"), "span 6 bytes, expected 8");
  add("ranges_overlap",
      image_of(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})", "123456"),
      "overlaps");
  add("ranges_gap",
      image_of(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}})", "12345"),
      "gap");
  add("first_range_not_at_0", one(R"("dtype":"U8","shape":[2],"data_offsets":[1,3])", "123"), "expected 0");
  add("data_not_covered", one(R"("dtype":"U8","shape":[2],"data_offsets":[0,2])", "1234"), "covers 2 bytes, but the data section holds 4");
  add("range_past_end", one(R"("dtype":"U8","shape":[8],"data_offsets":[0,8])", "12"), "covers 8 bytes, but the data section holds 2");
  add("metadata_value_not_string", image_of(R"({"__metadata__":{"format":1}})", ""), "__metadata__ value of 'format' must be a string");
  add("metadata_not_object", image_of(R"({"__metadata__":"pt"})", ""), "__metadata__ must be an object");
  add("missing_fields", one(R"("dtype":"U8","shape":[1])", "x"), "dtype, shape and data_offsets");
  return out;
}

}  // namespace moereg::test
