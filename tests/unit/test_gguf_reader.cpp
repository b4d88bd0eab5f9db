// SPDX-License-Identifier: Apache-2.0
// GGUF reader: a valid file's fields, then one crafted file per validation rule, each
// asserting the message names what is wrong.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "moereg/base/error.h"
#include "moereg/gguf/gguf_file.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_gguf_reader {
namespace {

// Builds GGUF bytes by hand, independently of moereg's writer.
struct gguf_bytes {
  std::string s;
  template <class T>
  gguf_bytes& put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s.append(b, sizeof(T));
    return *this;
  }
  gguf_bytes& str(const std::string& v) {
    put<std::uint64_t>(v.size());
    s += v;
    return *this;
  }
  gguf_bytes& head(std::uint64_t n_tensors, std::uint64_t n_kv, std::uint32_t version = 3) {
    s += "GGUF";
    put<std::uint32_t>(version);
    put<std::uint64_t>(n_tensors);
    return put<std::uint64_t>(n_kv);
  }
  gguf_bytes& kv_u32(const std::string& key, std::uint32_t v) {
    str(key);
    put<std::uint32_t>(4);
    return put<std::uint32_t>(v);
  }
  gguf_bytes& kv_str(const std::string& key, const std::string& v) {
    str(key);
    put<std::uint32_t>(8);
    return str(v);
  }
  gguf_bytes& tensor(const std::string& name, std::vector<std::uint64_t> ne, std::uint32_t type, std::uint64_t offset) {
    str(name);
    put<std::uint32_t>(static_cast<std::uint32_t>(ne.size()));
    for (auto n : ne) put<std::uint64_t>(n);
    put<std::uint32_t>(type);
    return put<std::uint64_t>(offset);
  }
  gguf_bytes& pad(std::size_t a = 32) {
    s.append((a - s.size() % a) % a, '\0');
    return *this;
  }
  gguf_bytes& data(std::size_t n, char fill = 0) {
    s.append(n, fill);
    return *this;
  }
};

std::string parse_error(const std::string& bytes) {
  try {
    parse_gguf_header(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size(), "crafted.gguf");
  } catch (const error& e) {
    return e.what();
  }
  return "no error";
}

#define EXPECT_MESSAGE(bytes, ...)                                               \
  do {                                                                           \
    std::string m_ = parse_error(bytes);                                         \
    EXPECT_NE(m_.find("crafted.gguf: gguf header: "), std::string::npos) << m_;  \
    for (const std::string& part : std::initializer_list<std::string>{__VA_ARGS__})  \
      EXPECT_NE(m_.find(part), std::string::npos) << m_;                         \
  } while (0)

// Two F32 tensors and a string KV: 'a' [2, 3] at 0 (24 bytes), 'b' [8] at 32.
gguf_bytes valid_file() {
  gguf_bytes b;
  b.head(2, 2).kv_str("general.architecture", "qwen3moe").kv_u32("qwen3moe.expert_count", 8);
  b.tensor("a", {3, 2}, 0, 0).tensor("b", {8}, 0, 32).pad();
  return b.data(64, 1);
}

}  // namespace

TEST(GgufReader, ReadsAValidFile) {
  moereg::test::temp_dir dir;
  auto b = valid_file();
  moereg::test::write_bytes(dir / "m.gguf", b.s);
  gguf_file f(dir / "m.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  ASSERT_EQ(f.tensors().size(), 2u);
  const gguf_tensor* a = f.find_tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->ne, (std::vector<std::uint64_t>{3, 2}));
  EXPECT_EQ(a->shape, (std::vector<std::int64_t>{2, 3}));  // PyTorch order
  EXPECT_EQ(a->nbytes, 24u);
  EXPECT_EQ(a->dtype(), dtype::F32);
  EXPECT_FALSE(a->quantized());
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(f.data(*f.find_tensor("b")), f.file().data() + f.data_offset() + 32);
  EXPECT_EQ(f.get_string("general.architecture"), "qwen3moe");
  EXPECT_EQ(f.get_uint("qwen3moe.expert_count"), 8u);
  EXPECT_EQ(f.get_uint("absent"), std::nullopt);
  tensor_info ti = a->as_tensor_info();
  EXPECT_EQ(ti.type, dtype::F32);
  EXPECT_EQ(ti.nbytes(), 24u);
}

TEST(GgufReader, TypedGetterNamesKeyAndTypeOnMismatch) {
  moereg::test::temp_dir dir;
  moereg::test::write_bytes(dir / "m.gguf", valid_file().s);
  gguf_file f(dir / "m.gguf");
  try {
    (void)f.get_uint("general.architecture");
    FAIL() << "expected an error";
  } catch (const error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("'general.architecture'"), std::string::npos) << m;
    EXPECT_NE(m.find("expected an integer, found STRING"), std::string::npos) << m;
  }
  EXPECT_THROW((void)f.get_string("qwen3moe.expert_count"), error);
}

TEST(GgufReader, EveryTruncationIsAnErrorNeverACrash) {
  std::string full = valid_file().s;
  for (std::size_t n = 0; n < full.size(); ++n) {
    std::string cut = full.substr(0, n);
    std::string m = parse_error(cut);
    EXPECT_NE(m, "no error") << "prefix of " << n << " bytes";
  }
  EXPECT_EQ(parse_error(full), "no error");
}

TEST(GgufReader, TruncatedHeaderNamesWhatIsCut) {
  gguf_bytes b;
  b.head(2, 2).kv_str("general.architecture", "qwen3moe").kv_u32("qwen3moe.expert_count", 8);
  b.tensor("a", {3, 2}, 0, 0).tensor("b", {8}, 0, 32);
  std::string s = b.s.substr(0, b.s.size() - 4);  // inside the last tensor's offset
  EXPECT_MESSAGE(s, "tensor 'b' offset at byte", "runs past the end of the file", "expected 8 bytes", "found 4 left");
}

TEST(GgufReader, RejectsBadMagic) {
  auto b = valid_file();
  b.s[3] = 'X';
  EXPECT_MESSAGE(b.s, "magic", "expected 'GGUF'", "found 47 47 55 58");
}

TEST(GgufReader, RejectsBadAndBigEndianVersions) {
  gguf_bytes b;
  b.head(0, 0, 4);
  EXPECT_MESSAGE(b.s, "version", "expected 3", "found 4");
  gguf_bytes be;
  be.head(0, 0, 0x03000000u);
  EXPECT_MESSAGE(be.s, "version", "big-endian");
  gguf_bytes v1;
  v1.head(0, 0, 1);
  EXPECT_MESSAGE(v1.s, "version", "found 1");
}

TEST(GgufReader, RejectsHugeCounts) {
  gguf_bytes t;
  t.head(~0ull, 0).data(64);
  EXPECT_MESSAGE(t.s, "tensor count 18446744073709551615 needs more bytes than the file has");
  gguf_bytes k;
  k.head(0, 1ull << 60).data(64);
  EXPECT_MESSAGE(k.s, "metadata count", "needs more bytes than the file has");
}

TEST(GgufReader, RejectsStringPastEndOfFile) {
  gguf_bytes b;
  b.head(0, 1).str("general.name").put<std::uint32_t>(8).put<std::uint64_t>(1000).data(10);
  EXPECT_MESSAGE(b.s, "key 'general.name'", "runs past the end of the file", "expected 1000 bytes", "found 10 left");
}

TEST(GgufReader, RejectsOverlongKey) {
  gguf_bytes b;
  b.head(0, 1).put<std::uint64_t>(70000).data(70010, 'k');
  EXPECT_MESSAGE(b.s, "key 0 length", "expected at most 65535 bytes", "found 70000");
}

TEST(GgufReader, RejectsEmptyAndDuplicateKeys) {
  gguf_bytes e;
  e.head(0, 1).kv_u32("", 1);
  EXPECT_MESSAGE(e.s, "key 0", "non-empty");
  gguf_bytes d;
  d.head(0, 2).kv_u32("x.y", 1).kv_u32("x.y", 2);
  EXPECT_MESSAGE(d.s, "key 'x.y'", "a duplicate");
}

TEST(GgufReader, RejectsUnknownValueType) {
  gguf_bytes b;
  b.head(0, 1).str("general.thing").put<std::uint32_t>(13).put<std::uint32_t>(0);
  EXPECT_MESSAGE(b.s, "key 'general.thing': value type", "expected 0..12", "found 13");
}

TEST(GgufReader, RejectsNestedArraysAndBadElementTypes) {
  gguf_bytes n;
  n.head(0, 1).str("nested").put<std::uint32_t>(9).put<std::uint32_t>(9).put<std::uint64_t>(1);
  EXPECT_MESSAGE(n.s, "key 'nested': array element type", "arrays do not nest", "found ARRAY");
  gguf_bytes u;
  u.head(0, 1).str("arr").put<std::uint32_t>(9).put<std::uint32_t>(77).put<std::uint64_t>(1);
  EXPECT_MESSAGE(u.s, "key 'arr': array element type", "found 77");
}

TEST(GgufReader, RejectsArrayCountBeyondTheFile) {
  gguf_bytes b;
  b.head(0, 1).str("tokens").put<std::uint32_t>(9).put<std::uint32_t>(8).put<std::uint64_t>(1u << 20).data(100);
  EXPECT_MESSAGE(b.s, "key 'tokens': array count 1048576 of STRING needs more bytes than the file has");
  gguf_bytes h;
  h.head(0, 1).str("scores").put<std::uint32_t>(9).put<std::uint32_t>(0).put<std::uint64_t>(1ull << 40).data(100);
  EXPECT_MESSAGE(h.s, "key 'scores': array count", "expected at most 8388608");
}

TEST(GgufReader, RejectsStringItemPastEnd) {
  gguf_bytes b;
  b.head(0, 1).str("tokens").put<std::uint32_t>(9).put<std::uint32_t>(8).put<std::uint64_t>(2);
  b.str("ok").put<std::uint64_t>(500).data(4);
  EXPECT_MESSAGE(b.s, "key 'tokens' item 1", "runs past the end of the file");
}

TEST(GgufReader, RejectsBoolOtherThanZeroOrOne) {
  gguf_bytes b;
  b.head(0, 1).str("flag").put<std::uint32_t>(7).put<std::uint8_t>(2);
  EXPECT_MESSAGE(b.s, "key 'flag': BOOL value", "expected 0 or 1", "found 2");
}

TEST(GgufReader, RejectsBadAlignment) {
  gguf_bytes t;
  t.head(0, 1).kv_u32("general.alignment", 48);
  EXPECT_MESSAGE(t.s, "general.alignment", "power of two", "found 48");
  gguf_bytes z;
  z.head(0, 1).kv_u32("general.alignment", 0);
  EXPECT_MESSAGE(z.s, "general.alignment", "found 0");
  gguf_bytes huge;  // a power of two, but the data section could start 2 GiB past the header
  huge.head(0, 1).kv_u32("general.alignment", 1u << 31);
  EXPECT_MESSAGE(huge.s, "general.alignment", "from 1 to 1048576", "found 2147483648");
  gguf_bytes w;
  w.head(0, 1).kv_str("general.alignment", "32");
  EXPECT_MESSAGE(w.s, "general.alignment", "expected UINT32", "found STRING");
}

TEST(GgufReader, HonoursCustomAlignment) {
  gguf_bytes b;
  b.head(1, 1).kv_u32("general.alignment", 64).tensor("w", {16}, 0, 32).pad(64).data(128);
  EXPECT_MESSAGE(b.s, "tensor 'w': offset", "multiple of the alignment 64", "found 32");
  gguf_bytes ok;
  ok.head(2, 1).kv_u32("general.alignment", 64).tensor("w", {16}, 0, 0).tensor("v", {4}, 0, 64).pad(64).data(64 + 16);
  auto h = parse_gguf_header(reinterpret_cast<const std::byte*>(ok.s.data()), ok.s.size(), "ok");
  EXPECT_EQ(h.alignment, 64u);
  EXPECT_EQ(h.data_offset % 64, 0u);
}

TEST(GgufReader, RejectsUnknownGgmlType) {
  gguf_bytes b;
  b.head(1, 0).tensor("w", {32}, 4, 0).pad().data(128);  // 4 was Q4_2, removed from ggml
  EXPECT_MESSAGE(b.s, "tensor 'w': ggml type", "found 4", "Q4_K (12)");
}

TEST(GgufReader, RejectsBadDimensionCounts) {
  gguf_bytes five;
  five.head(1, 0).tensor("w", {1, 1, 1, 1, 1}, 0, 0).pad().data(32);
  EXPECT_MESSAGE(five.s, "tensor 'w': n_dims", "expected 1 to 4", "found 5");
  gguf_bytes zero;
  zero.head(1, 0).tensor("w", {}, 0, 0).pad().data(32);
  EXPECT_MESSAGE(zero.s, "tensor 'w': n_dims", "found 0");
}

TEST(GgufReader, RejectsZeroDimension) {
  gguf_bytes b;
  b.head(1, 0).tensor("w", {4, 0}, 0, 0).pad().data(32);
  EXPECT_MESSAGE(b.s, "tensor 'w': ne[1]", "expected 1 to 2^63-1", "found 0");
}

TEST(GgufReader, RejectsElementCountOverflow) {
  gguf_bytes b;
  b.head(1, 0).tensor("w", {1ull << 32, 1ull << 32}, 0, 0).pad().data(32);
  EXPECT_MESSAGE(b.s, "tensor 'w': element count", "overflows");
  gguf_bytes bytes;  // 2^62 F64 elements: the count fits, the byte size does not
  bytes.head(1, 0).tensor("w", {1ull << 62}, 28, 0).pad().data(32);
  EXPECT_MESSAGE(bytes.s, "tensor 'w': byte size", "overflows");
}

TEST(GgufReader, RejectsRowsThatAreNotWholeBlocks) {
  gguf_bytes b;
  b.head(1, 0).tensor("blk.0.ffn_down_exps.weight", {48, 2}, 12, 0).pad().data(1024);  // Q4_K blocks of 256
  EXPECT_MESSAGE(b.s, "tensor 'blk.0.ffn_down_exps.weight': ne[0] of a Q4_K tensor", "multiple of its block size 256",
                 "found 48");
}

TEST(GgufReader, QuantizedByteSizeFollowsTheBlockTable) {
  gguf_bytes b;
  b.head(2, 0).tensor("q", {256, 2}, 12, 0).tensor("m", {64}, 39, 288).pad().data(288 + 34);
  auto h = parse_gguf_header(reinterpret_cast<const std::byte*>(b.s.data()), b.s.size(), "q");
  EXPECT_EQ(h.tensors[0].nbytes, 2u * 144);  // Q4_K: 144 bytes per 256
  EXPECT_TRUE(h.tensors[0].quantized());
  EXPECT_EQ(h.tensors[1].nbytes, 2u * 17);  // MXFP4: 17 bytes per 32
  EXPECT_THROW(h.tensors[0].as_tensor_info(), error);
}

TEST(GgufReader, RejectsMisalignedOffset) {
  gguf_bytes b;
  b.head(1, 0).tensor("w", {4}, 0, 8).pad().data(64);
  EXPECT_MESSAGE(b.s, "tensor 'w': offset", "multiple of the alignment 32", "found 8");
}

TEST(GgufReader, RejectsOverlappingTensors) {
  gguf_bytes b;
  b.head(2, 0).tensor("a", {16}, 0, 0).tensor("b", {8}, 0, 32).pad().data(128);  // a covers [0, 64)
  EXPECT_MESSAGE(b.s, "tensor 'b': offset", "expected 64, the aligned end of tensor 'a'", "found 32 (it overlaps tensor 'a')");
}

TEST(GgufReader, RejectsDataPastEndOfFile) {
  gguf_bytes b;
  b.head(1, 0).tensor("w", {16}, 0, 0).pad().data(60);
  EXPECT_MESSAGE(b.s, "tensor 'w': data", "F32 [16]", "to end within the file", "4 bytes past it");
  gguf_bytes far;
  far.head(1, 0).tensor("w", {16}, 0, ~0ull - 31).pad().data(64);
  EXPECT_MESSAGE(far.s, "tensor 'w': offset", "expected 0, the start of the data section", "a gap of");
}

TEST(GgufReader, RejectsEmptyAndDuplicateTensorNames) {
  gguf_bytes e;
  e.head(1, 0).tensor("", {4}, 0, 0).pad().data(32);
  EXPECT_MESSAGE(e.s, "tensor 0 name", "non-empty");
  gguf_bytes d;
  d.head(2, 0).tensor("w", {4}, 0, 0).tensor("w", {4}, 0, 32).pad().data(64);
  EXPECT_MESSAGE(d.s, "tensor 'w'", "a duplicate");
}

TEST(GgufReader, EscapesControlBytesInNames) {
  gguf_bytes b;
  b.head(1, 0).tensor(std::string("bad\nname", 8), {4}, 0, 8).pad().data(64);
  EXPECT_MESSAGE(b.s, "tensor 'bad\\nname'");
}

TEST(GgufReader, RejectsAHeaderOneTensorShort) {
  // Three 1-element F32 tensors, the count saying two: the third info is left where the
  // padding or the data section begins. Wherever the second info ends against the alignment
  // (moved by the first name's length), the file is refused, never read shifted.
  int as_padding = 0, as_trailing = 0;
  for (std::size_t len = 1; len <= 64; ++len) {
    gguf_bytes b;
    b.head(2, 1).kv_str("general.architecture", "qwen3moe").tensor(std::string(len, 'n'), {1}, 0, 0).tensor("t1", {1}, 0, 32);
    b.tensor("t2", {1}, 0, 64).pad().data(64 + 4, 1);
    std::string m = parse_error(b.s);
    EXPECT_NE(m.find("(is the tensor count short?)"), std::string::npos) << "name length " << len << ": " << m;
    as_padding += m.find("padding after the tensor infos: byte") != std::string::npos;
    as_trailing += m.find("data section: ") != std::string::npos;
  }
  EXPECT_GT(as_padding, 0);
  EXPECT_GT(as_trailing, 0);
  // The same file with the right count is read.
  gguf_bytes ok;
  ok.head(3, 1).kv_str("general.architecture", "qwen3moe").tensor("t0", {1}, 0, 0).tensor("t1", {1}, 0, 32);
  ok.tensor("t2", {1}, 0, 64).pad().data(64 + 4, 1);
  EXPECT_EQ(parse_error(ok.s), "no error");
}

TEST(GgufReader, RejectsNonZeroPaddingBeforeTheDataSection) {
  gguf_bytes b;
  b.head(1, 1).kv_str("general.architecture", "qwen3moe").tensor("w", {8}, 0, 0);
  const std::size_t infos_end = b.s.size();
  ASSERT_NE(infos_end % 32, 0u);
  b.pad().data(32);
  b.s[infos_end] = '\x07';
  EXPECT_MESSAGE(b.s, "padding after the tensor infos: byte " + std::to_string(infos_end),
                 "zero bytes up to the data section at byte " + std::to_string((infos_end + 31) / 32 * 32), "found 0x07");
}

TEST(GgufReader, RejectsGapsAndTrailingBytes) {
  gguf_bytes gap;
  gap.head(2, 0).tensor("a", {6}, 0, 0).tensor("b", {8}, 0, 64).pad().data(96);
  EXPECT_MESSAGE(gap.s, "tensor 'b': offset", "expected 32, the aligned end of tensor 'a'", "found 64 (a gap of 32 bytes)");
  gguf_bytes first;
  first.head(1, 0).tensor("a", {8}, 0, 32).pad().data(64);
  EXPECT_MESSAGE(first.s, "tensor 'a': offset", "expected 0, the start of the data section", "found 32 (a gap of 32 bytes)");
  auto trailing = valid_file();
  trailing.data(40);
  EXPECT_MESSAGE(trailing.s, "data section: 40 bytes after the padded end of the last tensor, 'b', at byte",
                 "is the tensor count short?");
  gguf_bytes none;
  none.head(0, 1).kv_u32("general.alignment", 32).pad().data(1);
  EXPECT_MESSAGE(none.s, "data section: 1 bytes after the tensor infos");
  // The last tensor's padding may be cut short (the file ends with its data).
  gguf_bytes last;
  last.head(2, 0).tensor("a", {6}, 0, 0).tensor("b", {3}, 0, 32).pad().data(32 + 12);
  EXPECT_EQ(parse_error(last.s), "no error");
  last.data(20);
  EXPECT_EQ(parse_error(last.s), "no error");
}

TEST(GgufReader, RejectsNamesThatAreNotUtf8) {
  gguf_bytes k;
  k.head(0, 1).kv_u32("general.\xff", 1);
  EXPECT_MESSAGE(k.s, "key 0 'general.\\xff'", "expected a UTF-8 name", "byte 0xff at offset 8");
  for (const char* bad : {"a\xc0\xaf", "a\xe0\x80\xaf", "a\xed\xa0\x80", "a\xf4\x90\x80\x80", "a\xf8\x88\x80\x80\x80", "ab\xe2\x82", "a\x80"}) {
    gguf_bytes t;
    t.head(1, 0).tensor(bad, {8}, 0, 0).pad().data(32);
    EXPECT_MESSAGE(t.s, "tensor 0 name", "expected a UTF-8 name");
  }
  gguf_bytes ok;  // 2-, 3- and 4-byte sequences, the highest code point
  ok.head(1, 1).kv_u32("caf\xc3\xa9.\xe2\x82\xac", 1).tensor("w\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", {8}, 0, 0).pad().data(32);
  EXPECT_EQ(parse_error(ok.s), "no error");
}

TEST(GgufReader, KeepsArraysEncodedAndDecodesThemOnDemand) {
  gguf_bytes b;
  b.head(0, 3).str("u8s").put<std::uint32_t>(9).put<std::uint32_t>(0).put<std::uint64_t>(1000);
  for (int i = 0; i < 1000; ++i) b.put<std::uint8_t>(static_cast<std::uint8_t>(i * 7));
  b.str("tokens").put<std::uint32_t>(9).put<std::uint32_t>(8).put<std::uint64_t>(3).str("a").str("").str("<0x0A>");
  b.str("flags").put<std::uint32_t>(9).put<std::uint32_t>(7).put<std::uint64_t>(2).put<std::uint8_t>(1).put<std::uint8_t>(0);
  b.pad();
  auto h = parse_gguf_header(reinterpret_cast<const std::byte*>(b.s.data()), b.s.size(), "a");
  const gguf_value& u8s = h.metadata[0].second;
  EXPECT_EQ(u8s.array_size(), 1000u);
  EXPECT_EQ(u8s.encoded_items().size(), 1000u) << "one byte per UINT8 item, as in the file";
  EXPECT_EQ(u8s.item(999).as_u64(), (999u * 7) & 0xFF);
  EXPECT_EQ(u8s.items()[3].as_u64(), 21u);
  const gguf_value& tokens = h.metadata[1].second;
  EXPECT_EQ(tokens.item(2).as_string(), "<0x0A>");
  EXPECT_EQ(tokens.string_items(), (std::vector<std::string_view>{"a", "", "<0x0A>"}));
  EXPECT_TRUE(tokens == gguf_value::array(gguf_type::string, {gguf_value::string("a"), gguf_value::string(""),
                                                               gguf_value::string("<0x0A>")}));
  EXPECT_TRUE(h.metadata[2].second.item(0).as_bool());
  EXPECT_FALSE(h.metadata[2].second.item(1).as_bool());
  EXPECT_THROW(tokens.item(3), usage_error);
}

TEST(GgufReader, RefusesAHeaderThatDecodesPastTheMemoryBudget) {
  // 200000 one-letter-ish UINT8 keys: 3.6 MB of file, ~40 MB decoded; the budget is 16 MiB + 2x.
  gguf_bytes b;
  const std::uint64_t n = 200000;
  b.head(0, n);
  for (std::uint64_t i = 0; i < n; ++i) b.str("k" + std::to_string(i)).put<std::uint32_t>(0).put<std::uint8_t>(1);
  EXPECT_MESSAGE(b.s, "decoding the header up to key 'k", "needs more memory than moereg allows for a file of",
                 "expected at most " + std::to_string(gguf_header_memory_budget(b.s.size())) + " bytes");
  // The same count of keys in a file that is large anyway (a model's data) is within budget.
  EXPECT_GT(gguf_header_memory_budget(10ull << 30), 20ull << 30);
}

TEST(GgufMoeDims, ReadsMetadataAndFallsBackToShapes) {
  moereg::test::temp_dir dir;
  gguf_bytes b;
  b.head(1, 4).kv_str("general.architecture", "qwen3moe").kv_u32("qwen3moe.expert_count", 8);
  b.kv_u32("qwen3moe.expert_used_count", 2).kv_u32("qwen3moe.embedding_length", 64);
  b.tensor("blk.0.ffn_gate_exps.weight", {64, 24, 8}, 30, 0).pad().data(64 * 24 * 8 * 2);
  moereg::test::write_bytes(dir / "m.gguf", b.s);
  gguf_file f(dir / "m.gguf");
  auto d = read_gguf_moe_dims(f);
  EXPECT_EQ(d.arch, "qwen3moe");
  EXPECT_EQ(d.experts, 8u);
  EXPECT_EQ(d.top_k, 2u);
  EXPECT_EQ(d.hidden, 64u);
  EXPECT_EQ(d.intermediate, 24u);  // from the tensor shape: no expert_feed_forward_length
}

TEST(GgufMoeDims, MetadataThatDisagreesWithShapesIsAnError) {
  moereg::test::temp_dir dir;
  gguf_bytes b;
  b.head(1, 2).kv_str("general.architecture", "qwen3moe").kv_u32("qwen3moe.expert_count", 16);
  b.tensor("blk.0.ffn_gate_up_exps.weight", {64, 48, 8}, 30, 0).pad().data(64 * 48 * 8 * 2);
  moereg::test::write_bytes(dir / "m.gguf", b.s);
  gguf_file f(dir / "m.gguf");
  try {
    read_gguf_moe_dims(f);
    FAIL() << "expected an error";
  } catch (const error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("'qwen3moe.expert_count' = 16 disagrees with tensor 'blk.0.ffn_gate_up_exps.weight', which implies 8"),
              std::string::npos)
        << m;
  }
}

}  // namespace test_gguf_reader
