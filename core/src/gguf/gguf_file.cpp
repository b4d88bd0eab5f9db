// SPDX-License-Identifier: Apache-2.0
#include "moereg/gguf/gguf_file.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <unordered_set>

#include "le_bytes.h"
#include "moereg/base/error.h"
#include "moereg/base/printable.h"

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
  const std::byte* at(std::uint64_t pos) const { return p_ + pos; }
  template <class Ctx>
  void skip(std::uint64_t n, const Ctx& ctx) {
    need(n, ctx);
    pos_ += n;
  }
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
    T v = gguf_bytes::load<T>(reinterpret_cast<const char*>(p_ + pos_));
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

// The offset of the first byte that breaks UTF-8 (overlong forms, surrogates and code
// points past U+10FFFF included), or npos when s is valid.
std::size_t utf8_error(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      ++i;
      continue;
    }
    std::size_t n = b >= 0xC2 && b <= 0xDF ? 1 : b >= 0xE0 && b <= 0xEF ? 2 : b >= 0xF0 && b <= 0xF4 ? 3 : 0;
    if (n == 0 || s.size() - i <= n) return i;  // not a lead byte, or the sequence is cut
    auto c1 = static_cast<unsigned char>(s[i + 1]);
    // The second byte's range rules out overlongs (E0, F0), surrogates (ED) and > U+10FFFF (F4).
    unsigned char lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
    if (c1 < lo || c1 > hi) return i;
    for (std::size_t k = 2; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return i;
    i += n + 1;
  }
  return std::string_view::npos;
}

std::string hex_byte(unsigned c) {
  static const char hex[] = "0123456789abcdef";
  return std::string("0x") + hex[(c >> 4) & 15] + hex[c & 15];
}

// Names come from the file: quoted, cut at 200 bytes, control bytes and non-UTF-8 escaped.
std::string quoted_name(const std::string& s) { return quote(s); }

// A name (key or tensor name) that is not UTF-8 is refused: llama.cpp and every tool
// after it treat names as text.
void check_utf8_name(const cursor& c, const std::string& what, const std::string& name) {
  if (auto at = utf8_error(name); at != std::string_view::npos)
    c.fail(what + " " + quoted_name(name), "a UTF-8 name",
           "byte " + hex_byte(static_cast<unsigned char>(name[at])) + " at offset " + str(at) + " of the name, which is not UTF-8");
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
  auto kctx = [&] { return "key " + quoted_name(key); };
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
  // The items are checked where they lie and kept encoded (gguf_value decodes on demand),
  // so an array costs its bytes in the file, not a decoded value per item.
  const std::uint64_t begin = c.pos();
  if (et == gguf_type::string) {
    for (std::uint64_t i = 0; i < count; ++i) {
      auto ictx = [&] { return kctx() + " item " + str(i); };
      auto len = c.read<std::uint64_t>([&] { return ictx() + " length"; });
      if (len > gguf_max_string_length) c.fail(ictx() + " length", "at most " + str(gguf_max_string_length) + " bytes", str(len));
      c.skip(len, ictx);
    }
  } else {
    c.skip(count * gguf_scalar_size(et), kctx);  // count * size <= left, checked above
    if (et == gguf_type::boolean)
      for (std::uint64_t i = 0; i < count; ++i)
        if (auto b = static_cast<std::uint8_t>(*c.at(begin + i)); b > 1)
          c.fail(kctx() + " item " + str(i) + ": BOOL value", "0 or 1", str(b));
  }
  return gguf_value::encoded_array(et, count, std::string(reinterpret_cast<const char*>(c.at(begin)), c.pos() - begin));
}

std::uint32_t read_alignment(const cursor& c, const gguf_value& v) {
  if (v.type() != gguf_type::u32)
    c.fail("key 'general.alignment': value type", "UINT32", gguf_type_name(static_cast<std::uint32_t>(v.type())));
  auto a = static_cast<std::uint32_t>(v.as_u64());
  if (a == 0 || (a & (a - 1)) != 0 || a > gguf_max_alignment)
    c.fail("key 'general.alignment'", "a power of two from 1 to " + str(gguf_max_alignment), str(a));
  return a;
}

gguf_tensor read_tensor_info(cursor& c, std::uint64_t index, std::uint32_t alignment) {
  gguf_tensor t;
  t.name = c.read_string(gguf_max_key_length, [&] { return "tensor " + str(index) + " name"; });
  if (t.name.empty()) c.fail("tensor " + str(index) + " name", "a non-empty string", "an empty one");
  check_utf8_name(c, "tensor " + str(index) + " name", t.name);
  auto tctx = [&] { return "tensor " + quoted_name(t.name); };
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

  // The decoded header may take at most gguf_header_memory_budget(size): arrays stay
  // encoded, and what each key and tensor info costs beyond its bytes is counted, so a
  // small file with millions of tiny entries is refused rather than amplified.
  const std::uint64_t budget = gguf_header_memory_budget(size);
  std::uint64_t used = 0;
  auto charge = [&](std::uint64_t cost, const std::string& what) {
    used += cost;
    if (used > budget)
      c.fail("decoding the header up to " + what + " needs more memory than moereg allows for a file of " + str(size) +
                 " bytes",
             "at most " + str(budget) + " bytes (16 MiB + twice the file size)", str(used) + " bytes so far");
  };
  constexpr std::uint64_t reserve_cap = 4096;  // counts are untrusted: grow past this as entries arrive

  std::unordered_set<std::string> keys;
  h.metadata.reserve(std::min(n_kv, reserve_cap));
  for (std::uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string(gguf_max_key_length, [&] { return "key " + str(i); });
    if (key.empty()) c.fail("key " + str(i), "a non-empty string", "an empty one");
    check_utf8_name(c, "key " + str(i), key);
    if (!keys.insert(key).second) c.fail("key " + quoted_name(key), "each key once", "a duplicate");
    gguf_value v = read_value(c, key);
    if (key == "general.alignment") h.alignment = read_alignment(c, v);
    charge(gguf_entry_overhead + 2 * key.size() + v.as_string().size() + v.encoded_items().size(), "key " + quoted_name(key));
    h.metadata.emplace_back(std::move(key), std::move(v));
  }

  std::unordered_set<std::string> names;
  h.tensors.reserve(std::min(n_tensors, reserve_cap));
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    h.tensors.push_back(read_tensor_info(c, i, h.alignment));
    const gguf_tensor& t = h.tensors.back();
    if (!names.insert(t.name).second) c.fail("tensor " + quoted_name(t.name), "each name once", "a duplicate");
    charge(2 * gguf_entry_overhead + 3 * t.name.size() + 24 * t.ne.size(), "tensor " + quoted_name(t.name));
  }

  // The data section starts at the aligned end of the tensor infos, and the bytes between
  // are zero. Tensors follow in header order, each at the aligned end of the one before
  // (what llama.cpp writes and requires), and the file ends with the last one's padding. A
  // tensor count one short leaves an info where padding or data belongs: refused here.
  const std::uint64_t infos_end = c.pos();
  h.data_offset = infos_end + (h.alignment - infos_end % h.alignment) % h.alignment;  // pos <= size < 2^63
  for (std::uint64_t p = infos_end; p < std::min(h.data_offset, size); ++p)
    if (bytes[p] != std::byte{0})
      c.fail("padding after the tensor infos: byte " + str(p),
             "zero bytes up to the data section at byte " + str(h.data_offset) + " (is the tensor count short?)",
             hex_byte(static_cast<unsigned char>(bytes[p])));
  std::uint64_t expected = 0;  // the next tensor's offset from the data section
  const gguf_tensor* prev = nullptr;
  for (const auto& t : h.tensors) {
    if (t.offset != expected) {
      std::string at = prev ? "the aligned end of tensor " + quoted_name(prev->name) : std::string("the start of the data section");
      std::string how = t.offset < expected ? " (it overlaps tensor " + quoted_name(prev->name) + ")"
                                            : " (a gap of " + str(t.offset - expected) + " bytes)";
      c.fail("tensor " + quoted_name(t.name) + ": offset",
             str(expected) + ", " + at + " (tensors are stored in header order, each padded to the alignment)",
             str(t.offset) + how);
    }
    std::uint64_t begin = h.data_offset + t.offset, end;  // offset <= size + alignment: no overflow
    if (__builtin_add_overflow(begin, t.nbytes, &end) || end > size)
      c.fail("tensor " + quoted_name(t.name) + ": data [" + str(begin) + ", " + (end < begin ? std::string("2^64+") : str(end)) +
                 ") of " + std::string(ggml_traits(t.type).name) + " " + shape_string(t.shape),
             "to end within the file (" + str(size) + " bytes)",
             end < begin ? std::string("a sum past 2^64") : "it ends " + str(end - size) + " bytes past it");
    expected = t.offset + t.nbytes + (h.alignment - (t.offset + t.nbytes) % h.alignment) % h.alignment;
    prev = &t;
  }
  const std::uint64_t data_end = h.data_offset + expected;
  if (size > data_end)
    c.fail("data section: " + str(size - data_end) + " bytes after " +
               (prev ? "the padded end of the last tensor, " + quoted_name(prev->name) + "," : std::string("the tensor infos")) +
               " at byte " + str(data_end),
           "the file to end there (is the tensor count short?)", "a file of " + str(size) + " bytes");
  return h;
}

std::uint64_t gguf_header_memory_budget(std::uint64_t file_size) {
  constexpr std::uint64_t floor = 16u << 20;
  return file_size > (UINT64_MAX - floor) / 2 ? UINT64_MAX : floor + 2 * file_size;
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
