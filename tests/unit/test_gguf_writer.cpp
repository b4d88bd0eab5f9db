// SPDX-License-Identifier: Apache-2.0
// GGUF writer: exact bytes for a small file, and write -> read round trips of every
// metadata type and of element and quantized tensors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "moereg/base/error.h"
#include "moereg/gguf/gguf_file.h"
#include "moereg/gguf/gguf_writer.h"
#include "test_support.h"

using namespace moereg;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_gguf_writer {
namespace {

template <class T>
void put(std::string& s, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  s.append(b, sizeof(T));
}

std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7 + (i >> 8)) & 0xFF);
  return s;
}

gguf_metadata every_value_type() {
  std::vector<gguf_value> strings = {gguf_value::string("a"), gguf_value::string(""), gguf_value::string("<0x0A>")};
  std::vector<gguf_value> floats = {gguf_value::f32(-1.5f), gguf_value::f32(std::numeric_limits<float>::infinity())};
  return {
      {"general.architecture", gguf_value::string("qwen3moe")},
      {"t.u8", gguf_value::u8(200)},
      {"t.i8", gguf_value::i8(-100)},
      {"t.u16", gguf_value::u16(60000)},
      {"t.i16", gguf_value::i16(-30000)},
      {"t.u32", gguf_value::u32(4000000000u)},
      {"t.i32", gguf_value::i32(-2000000000)},
      {"t.u64", gguf_value::u64(~0ull)},
      {"t.i64", gguf_value::i64(std::numeric_limits<std::int64_t>::min())},
      {"t.f32", gguf_value::f32_bits(0x7F800001u)},  // a signalling NaN: its bits must survive
      {"t.f64", gguf_value::f64(0.1)},
      {"t.bool", gguf_value::boolean(true)},
      {"t.strings", gguf_value::array(gguf_type::string, strings)},
      {"t.floats", gguf_value::array(gguf_type::f32, floats)},
      {"t.empty", gguf_value::array(gguf_type::i32, {})},
  };
}

}  // namespace

TEST(GgufWriter, WritesTheExactBytesOfTheFormat) {
  moereg::test::temp_dir dir;
  std::string path = dir / "x.gguf";
  std::string data = pattern(6 * 2, 1);
  {
    gguf_writer w(path, {{"general.alignment", gguf_value::u32(32)}}, {{"w", ggml_type::BF16, {2, 3}}});
    w.write(0, 0, data.data(), data.size());
    w.commit();
  }
  // Hand-assembled image: header, KV, tensor info, zero padding to 32, data, padding to 32.
  std::string e = "GGUF";
  put<std::uint32_t>(e, 3);
  put<std::uint64_t>(e, 1);
  put<std::uint64_t>(e, 1);
  put<std::uint64_t>(e, 17);
  e += "general.alignment";
  put<std::uint32_t>(e, 4);
  put<std::uint32_t>(e, 32);
  put<std::uint64_t>(e, 1);
  e += "w";
  put<std::uint32_t>(e, 2);
  put<std::uint64_t>(e, 3);  // ne0 = innermost = PyTorch's last dim
  put<std::uint64_t>(e, 2);
  put<std::uint32_t>(e, 30);  // BF16
  put<std::uint64_t>(e, 0);
  e.append((32 - e.size() % 32) % 32, '\0');
  e += data;
  e.append((32 - e.size() % 32) % 32, '\0');
  EXPECT_EQ(moereg::test::read_bytes(path), e);
}

TEST(GgufWriter, RoundTripsEveryMetadataTypeAndTensorKind) {
  moereg::test::temp_dir dir;
  std::string path = dir / "m.gguf";
  gguf_metadata meta = every_value_type();
  std::vector<gguf_tensor_spec> specs = {
      {"token_embd.weight", ggml_type::F32, {5, 7}},
      {"blk.0.ffn_gate_exps.weight", ggml_type::BF16, {4, 3, 64}},
      {"blk.0.ffn_down_exps.weight", ggml_type::F16, {4, 64, 3}},
      {"blk.0.ffn_up_exps.weight", ggml_type::Q4_K, {4, 3, 256}},  // blocks passed through
      {"blk.0.attn_q.weight", ggml_type::MXFP4, {2, 64}},
      {"scalarish", ggml_type::I32, {1}},
  };
  std::vector<std::string> payload;
  {
    gguf_writer w(path, meta, specs);
    ASSERT_EQ(w.tensors().size(), specs.size());
    // Write in reverse order and in two pieces each, as parallel workers would.
    for (std::size_t i = specs.size(); i-- > 0;) {
      payload.insert(payload.begin(), pattern(w.tensors()[i].nbytes, static_cast<unsigned>(i)));
      const std::string& p = payload.front();
      std::size_t half = p.size() / 2;
      w.write(i, half, p.data() + half, p.size() - half);
      w.write(i, 0, p.data(), half);
    }
    EXPECT_FALSE(std::filesystem::exists(path));  // only the temporary exists before commit
    w.commit();
  }
  EXPECT_EQ(payload[3].size(), 4u * 3 * 144);
  EXPECT_EQ(payload[4].size(), 2u * 2 * 17);

  gguf_file f(path);
  EXPECT_EQ(f.version(), 3u);
  ASSERT_EQ(f.metadata().size(), meta.size());
  for (std::size_t i = 0; i < meta.size(); ++i) {
    EXPECT_EQ(f.metadata()[i].first, meta[i].first);
    EXPECT_TRUE(f.metadata()[i].second == meta[i].second) << meta[i].first;
  }
  EXPECT_EQ(f.find("t.f32")->as_u64(), 0x7F800001u);
  EXPECT_EQ(f.find("t.i64")->as_i64(), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(f.find("t.strings")->items()[2].as_string(), "<0x0A>");
  EXPECT_EQ(f.get_float("t.f64"), 0.1);
  EXPECT_EQ(f.get_bool("t.bool"), true);
  ASSERT_EQ(f.tensors().size(), specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const gguf_tensor& t = f.tensors()[i];
    EXPECT_EQ(t.name, specs[i].name);
    EXPECT_EQ(t.type, specs[i].type);
    EXPECT_EQ(t.shape, specs[i].shape);
    EXPECT_EQ(t.offset % 32, 0u);
    ASSERT_EQ(t.nbytes, payload[i].size());
    EXPECT_EQ(std::memcmp(f.data(t), payload[i].data(), t.nbytes), 0) << t.name;
  }
  EXPECT_EQ(f.find_tensor("blk.0.ffn_gate_exps.weight")->ne, (std::vector<std::uint64_t>{64, 3, 4}));
}

TEST(GgufWriter, UsesTheAlignmentTheMetadataAsksFor) {
  moereg::test::temp_dir dir;
  std::string path = dir / "a.gguf";
  {
    gguf_writer w(path, {{"general.alignment", gguf_value::u32(256)}},
                  {{"a", ggml_type::F32, {3}}, {"b", ggml_type::F32, {5}}});
    std::string a = pattern(12, 1), b = pattern(20, 2);
    w.write(0, 0, a.data(), a.size());
    w.write(1, 0, b.data(), b.size());
    w.commit();
  }
  gguf_file f(path);
  EXPECT_EQ(f.alignment(), 256u);
  EXPECT_EQ(f.data_offset() % 256, 0u);
  EXPECT_EQ(f.find_tensor("b")->offset, 256u);
  // Padding between tensors is zero.
  const std::byte* pad = f.data(*f.find_tensor("a")) + 12;
  for (int i = 0; i < 256 - 12; ++i) ASSERT_EQ(pad[i], std::byte{0});
}

TEST(GgufWriter, UncommittedWriterLeavesNothing) {
  moereg::test::temp_dir dir;
  std::string path = dir / "u.gguf";
  std::string temp;
  {
    gguf_writer w(path, {}, {{"a", ggml_type::F32, {3}}});
    temp = w.temp_path();
    EXPECT_TRUE(std::filesystem::exists(temp));
    EXPECT_THROW(w.commit(), error);  // tensor 'a' never written
  }
  EXPECT_FALSE(std::filesystem::exists(temp));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(GgufWriter, RefusesWhatGgufCannotHold) {
  auto message = [](const gguf_metadata& m, const std::vector<gguf_tensor_spec>& s) {
    try {
      layout_gguf(m, s);
    } catch (const error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({}, {{"w", ggml_type::F32, {1, 1, 1, 1, 1}}}).find("tensor 'w': rank 5, expected 1 to 4"),
            std::string::npos);
  EXPECT_NE(message({}, {{"w", ggml_type::Q4_0, {2, 48}}}).find("innermost dimension 48 is not a multiple of the Q4_0 block size 32"),
            std::string::npos);
  EXPECT_NE(message({}, {{"w", ggml_type::F32, {2, 0}}}).find("every dimension > 0"), std::string::npos);
  EXPECT_NE(message({}, {{"w", ggml_type::F32, {2}}, {"w", ggml_type::F32, {2}}}).find("given twice"), std::string::npos);
  EXPECT_NE(message({{"general.alignment", gguf_value::u32(24)}}, {}).find("power of two"), std::string::npos);
  EXPECT_NE(message({{"k", gguf_value::u8(1)}, {"k", gguf_value::u8(2)}}, {}).find("key 'k' given twice"), std::string::npos);
  EXPECT_THROW(gguf_value::array(gguf_type::u8, {gguf_value::u16(1)}), usage_error);
}

}  // namespace test_gguf_writer
