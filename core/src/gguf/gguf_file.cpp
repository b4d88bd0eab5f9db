// SPDX-License-Identifier: Apache-2.0
#include "moereg/gguf/gguf_file.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <unordered_set>

#include "moereg/base/error.h"

namespace moereg {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

std::uint64_t gguf_tensor::numel() const {
  std::uint64_t n = 1;
  for (auto d : ne) n *= d;  // validated against overflow when parsed
  return n;
}

tensor_info gguf_tensor::as_tensor_info() const {
  auto d = dtype();
  if (!d)
    throw error("gguf tensor '" + name + "': type " + std::string(ggml_traits(type).name) +
                " is block-quantized, expected an element type (F32, F16, BF16, F64, I8..I64)");
  tensor_info t;
  t.name = name;
  t.type = *d;
  t.shape = shape;
  t.begin = offset;
  t.end = offset + nbytes;
  return t;
}

namespace {

std::string str(std::uint64_t v) { return std::to_string(v); }

// A cursor over the untrusted header. Every read checks the bytes left first; message
// context is built only on failure, because a vocabulary array has ~10^5 items.
class cursor {
 public:
  cursor(const std::byte* p, std::uint64_t size, std::string_view where) : p_(p), size_(size), where_(where) {}

  [[noreturn]] void fail(const std::string& what, const std::string& expected, const std::string& found) const {
    throw error(where_ + ": gguf header: " + what + ", expected " + expected + ", found " + found);
  }

  std::uint64_t pos() const { return pos_; }
  std::uint64_t left() const { return size_ - pos_; }
  const std::string& where() const { return where_; }

  template <class Ctx>
  void need(std::uint64_t n, const Ctx& ctx) const {
    if (n > left())
      fail(ctx() + " at byte " + str(pos_) + " runs past the end of the file", str(n) + " bytes",
           str(left()) + " left");
  }

  template <class T, class Ctx>
  T read(const Ctx& ctx) {
    need(sizeof(T), ctx);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  template <class Ctx>
  std::string read_string(std::uint64_t cap, const Ctx& ctx) {
    auto len = read<std::uint64_t>([&] { return ctx() + " length"; });
    if (len > cap) fail(ctx() + " length", "at most " + str(cap) + " bytes", str(len));
    need(len, ctx);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  const std::byte* p_;
  std::uint64_t size_;
  std::uint64_t pos_ = 0;
  std::string where_;
};

std::string quoted(const std::string& s) {
  // Names come from the file: show at most 200 bytes, with control bytes escaped.
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < 200; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) {
      static const char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > 200) out += "...";
  return out + "'";
}

std::string ne_string(const std::vector<std::uint64_t>& ne) {
  std::string s = "{";
  for (std::size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + str(ne[i]);
  return s + "}";
}

bool known_value_type(std::uint32_t t) { return t <= static_cast<std::uint32_t>(gguf_type::f64); }

// Smallest encoding of one item of type t: lets a count be checked against the bytes left
// before anything is allocated for it.
std::uint64_t min_item_size(gguf_type t) { return t == gguf_type::string ? 8 : gguf_scalar_size(t); }

template <class Ctx>
gguf_value read_scalar(cursor& c, gguf_type t, const Ctx& ctx) {
  switch (t) {
    case gguf_type::u8: return gguf_value::u8(c.read<std::uint8_t>(ctx));
    case gguf_type::i8: return gguf_value::i8(c.read<std::int8_t>(ctx));
    case gguf_type::u16: return gguf_value::u16(c.read<std::uint16_t>(ctx));
    case gguf_type::i16: return gguf_value::i16(c.read<std::int16_t>(ctx));
    case gguf_type::u32: return gguf_value::u32(c.read<std::uint32_t>(ctx));
    case gguf_type::i32: return gguf_value::i32(c.read<std::int32_t>(ctx));
    case gguf_type::u64: return gguf_value::u64(c.read<std::uint64_t>(ctx));
    case gguf_type::i64: return gguf_value::i64(c.read<std::int64_t>(ctx));
    case gguf_type::f32: return gguf_value::f32_bits(c.read<std::uint32_t>(ctx));
    case gguf_type::f64: return gguf_value::f64(c.read<double>(ctx));
    case gguf_type::boolean: {
      auto b = c.read<std::uint8_t>(ctx);
      if (b > 1) c.fail(ctx() + ": BOOL value", "0 or 1", str(b));
      return gguf_value::boolean(b != 0);
    }
    case gguf_type::string: return gguf_value::string(c.read_string(gguf_max_string_length, ctx));
    case gguf_type::array: break;
  }
  c.fail(ctx() + ": value type", "a scalar type", gguf_type_name(static_cast<std::uint32_t>(t)));
}

gguf_value read_value(cursor& c, const std::string& key) {
  auto kctx = [&] { return "key " + quoted(key); };
  auto type = c.read<std::uint32_t>([&] { return kctx() + " value type"; });
  if (!known_value_type(type)) c.fail(kctx() + ": value type", "0..12", str(type));
  if (static_cast<gguf_type>(type) != gguf_type::array) return read_scalar(c, static_cast<gguf_type>(type), kctx);

  auto elem = c.read<std::uint32_t>([&] { return kctx() + " array element type"; });
  if (!known_value_type(elem)) c.fail(kctx() + ": array element type", "0..12", str(elem));
  auto et = static_cast<gguf_type>(elem);
  if (et == gguf_type::array) c.fail(kctx() + ": array element type", "a scalar or STRING (arrays do not nest)", "ARRAY");
  auto count = c.read<std::uint64_t>([&] { return kctx() + " array count"; });
  if (count > gguf_max_array_items) c.fail(kctx() + ": array count", "at most " + str(gguf_max_array_items), str(count));
  if (count > c.left() / min_item_size(et))
    c.fail(kctx() + ": array count " + str(count) + " of " + gguf_type_name(elem) + " needs more bytes than the file has",
           "at most " + str(c.left() / min_item_size(et)) + " items", str(count));
  std::vector<gguf_value> items;
  items.reserve(count);
  for (std::uint64_t i = 0; i < count; ++i)
    items.push_back(read_scalar(c, et, [&] { return kctx() + " item " + str(i); }));
  return gguf_value::array(et, std::move(items));
}

std::uint32_t read_alignment(const cursor& c, const gguf_value& v) {
  if (v.type() != gguf_type::u32)
    c.fail("key 'general.alignment': value type", "UINT32", gguf_type_name(static_cast<std::uint32_t>(v.type())));
  auto a = static_cast<std::uint32_t>(v.as_u64());
  if (a == 0 || (a & (a - 1)) != 0) c.fail("key 'general.alignment'", "a power of two", str(a));
  return a;
}

gguf_tensor read_tensor_info(cursor& c, std::uint64_t index, std::uint32_t alignment) {
  gguf_tensor t;
  t.name = c.read_string(gguf_max_key_length, [&] { return "tensor " + str(index) + " name"; });
  if (t.name.empty()) c.fail("tensor " + str(index) + " name", "a non-empty string", "an empty one");
  auto tctx = [&] { return "tensor " + quoted(t.name); };
  auto n_dims = c.read<std::uint32_t>([&] { return tctx() + " n_dims"; });
  if (n_dims < 1 || n_dims > gguf_max_dims) c.fail(tctx() + ": n_dims", "1 to " + str(gguf_max_dims), str(n_dims));
  std::uint64_t numel = 1;
  for (std::uint32_t d = 0; d < n_dims; ++d) {
    auto n = c.read<std::uint64_t>([&] { return tctx() + " ne[" + str(d) + "]"; });
    if (n == 0 || n > static_cast<std::uint64_t>(INT64_MAX))
      c.fail(tctx() + ": ne[" + str(d) + "]", "1 to 2^63-1", str(n));
    t.ne.push_back(n);
    if (__builtin_mul_overflow(numel, n, &numel) || numel > static_cast<std::uint64_t>(INT64_MAX))
      c.fail(tctx() + ": element count of ne " + ne_string(t.ne), "at most 2^63-1", "more (the product overflows)");
  }
  t.shape.assign(t.ne.rbegin(), t.ne.rend());
  auto type = c.read<std::uint32_t>([&] { return tctx() + " type"; });
  auto traits = ggml_traits(type);
  if (!traits) c.fail(tctx() + ": ggml type", "one of " + known_ggml_types(), str(type));
  t.type = traits->type;
  if (t.ne[0] % traits->block_size != 0)
    c.fail(tctx() + ": ne[0] of a " + std::string(traits->name) + " tensor",
           "a multiple of its block size " + str(traits->block_size), str(t.ne[0]));
  if (__builtin_mul_overflow(numel / traits->block_size, traits->type_size, &t.nbytes))
    c.fail(tctx() + ": byte size", "at most 2^64-1", "more (the product overflows)");
  t.offset = c.read<std::uint64_t>([&] { return tctx() + " offset"; });
  if (t.offset % alignment != 0)
    c.fail(tctx() + ": offset", "a multiple of the alignment " + str(alignment), str(t.offset));
  return t;
}

}  // namespace

gguf_header parse_gguf_header(const std::byte* bytes, std::uint64_t size, std::string_view where) {
  cursor c(bytes, size, where);
  gguf_header h;
  auto magic = c.read<std::uint32_t>([] { return std::string("magic"); });
  if (std::memcmp(&magic, "GGUF", 4) != 0) {
    std::string found;
    for (int i = 0; i < 4; ++i) {
      static const char hex[] = "0123456789abcdef";
      auto b = static_cast<unsigned char>(bytes[i]);
      found += i ? " " : "";
      found += hex[b >> 4];
      found += hex[b & 15];
    }
    c.fail("magic", "'GGUF' (47 47 55 46)", found);
  }
  h.version = c.read<std::uint32_t>([] { return std::string("version"); });
  if (h.version == 0x02000000u || h.version == 0x03000000u)
    c.fail("version", "a little-endian file (2 or 3)", "a big-endian one, which moereg does not read");
  if (h.version != 2 && h.version != 3) c.fail("version", "3 (or 2, read the same way)", str(h.version));
  auto n_tensors = c.read<std::uint64_t>([] { return std::string("tensor count"); });
  auto n_kv = c.read<std::uint64_t>([] { return std::string("metadata count"); });
  // A KV takes at least 8 + 1 + 4 + 1 bytes, a tensor info at least 8 + 1 + 4 + 8 + 4 + 8.
  if (n_kv > c.left() / 14)
    c.fail("metadata count " + str(n_kv) + " needs more bytes than the file has", "at most " + str(c.left() / 14), str(n_kv));
  if (n_tensors > c.left() / 33)
    c.fail("tensor count " + str(n_tensors) + " needs more bytes than the file has", "at most " + str(c.left() / 33),
           str(n_tensors));

  std::unordered_set<std::string> keys;
  h.metadata.reserve(n_kv);
  for (std::uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string(gguf_max_key_length, [&] { return "key " + str(i); });
    if (key.empty()) c.fail("key " + str(i), "a non-empty string", "an empty one");
    if (!keys.insert(key).second) c.fail("key " + quoted(key), "each key once", "a duplicate");
    gguf_value v = read_value(c, key);
    if (key == "general.alignment") h.alignment = read_alignment(c, v);
    h.metadata.emplace_back(std::move(key), std::move(v));
  }

  std::unordered_set<std::string> names;
  h.tensors.reserve(n_tensors);
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    h.tensors.push_back(read_tensor_info(c, i, h.alignment));
    if (!names.insert(h.tensors.back().name).second)
      c.fail("tensor " + quoted(h.tensors.back().name), "each name once", "a duplicate");
  }

  std::uint64_t pad = (h.alignment - c.pos() % h.alignment) % h.alignment;
  h.data_offset = c.pos() + pad;  // cannot overflow: pos <= size and pad < alignment <= 2^31
  std::vector<const gguf_tensor*> order;
  order.reserve(h.tensors.size());
  for (const auto& t : h.tensors) {
    std::uint64_t begin, end;
    if (__builtin_add_overflow(h.data_offset, t.offset, &begin) || __builtin_add_overflow(begin, t.nbytes, &end))
      c.fail("tensor " + quoted(t.name) + ": offset " + str(t.offset) + " + " + str(t.nbytes) + " bytes",
             "to end within the file (" + str(size) + " bytes)", "a sum past 2^64");
    if (end > size)
      c.fail("tensor " + quoted(t.name) + ": data [" + str(begin) + ", " + str(end) + ") of " +
                 std::string(ggml_traits(t.type).name) + " " + shape_string(t.shape),
             "to end within the file (" + str(size) + " bytes)", "it ends " + str(end - size) + " bytes past it");
    order.push_back(&t);
  }
  std::sort(order.begin(), order.end(), [](const gguf_tensor* a, const gguf_tensor* b) { return a->offset < b->offset; });
  for (std::size_t i = 1; i < order.size(); ++i) {
    const gguf_tensor& prev = *order[i - 1];
    const gguf_tensor& cur = *order[i];
    if (cur.offset < prev.offset + prev.nbytes)
      c.fail("tensor " + quoted(cur.name) + ": offset", "at least " + str(prev.offset + prev.nbytes) + " (the end of tensor " +
                                                             quoted(prev.name) + ")",
             str(cur.offset) + " (the two overlap)");
  }
  return h;
}

gguf_file::gguf_file(const std::string& path) : file_(path) {
  header_ = parse_gguf_header(file_.data(), file_.size(), path);
  for (std::size_t i = 0; i < header_.metadata.size(); ++i) keys_.emplace(header_.metadata[i].first, i);
  for (std::size_t i = 0; i < header_.tensors.size(); ++i) names_.emplace(header_.tensors[i].name, i);
}

const gguf_value* gguf_file::find(std::string_view key) const {
  auto it = keys_.find(key);
  return it == keys_.end() ? nullptr : &header_.metadata[it->second].second;
}

const gguf_tensor* gguf_file::find_tensor(std::string_view name) const {
  auto it = names_.find(name);
  return it == names_.end() ? nullptr : &header_.tensors[it->second];
}

namespace {
[[noreturn]] void wrong_type(const std::string& path, std::string_view key, const char* expected, const gguf_value& v) {
  throw error(path + ": gguf metadata '" + std::string(key) + "': expected " + expected + ", found " +
              gguf_type_name(static_cast<std::uint32_t>(v.type())));
}
}  // namespace

std::optional<std::uint64_t> gguf_file::get_uint(std::string_view key) const {
  const gguf_value* v = find(key);
  if (!v) return std::nullopt;
  auto u = v->to_uint();
  if (!u) {
    if (v->is_signed())
      throw error(path() + ": gguf metadata '" + std::string(key) + "': expected a non-negative integer, found " +
                  std::to_string(v->as_i64()));
    wrong_type(path(), key, "an integer", *v);
  }
  return u;
}

std::optional<double> gguf_file::get_float(std::string_view key) const {
  const gguf_value* v = find(key);
  if (!v) return std::nullopt;
  if (!v->is_float()) wrong_type(path(), key, "FLOAT32 or FLOAT64", *v);
  return v->as_f64();
}

std::optional<std::string> gguf_file::get_string(std::string_view key) const {
  const gguf_value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type() != gguf_type::string) wrong_type(path(), key, "STRING", *v);
  return v->as_string();
}

std::optional<bool> gguf_file::get_bool(std::string_view key) const {
  const gguf_value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type() != gguf_type::boolean) wrong_type(path(), key, "BOOL", *v);
  return v->as_bool();
}

}  // namespace moereg
