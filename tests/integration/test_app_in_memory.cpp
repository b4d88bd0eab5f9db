// SPDX-License-Identifier: Apache-2.0
// A checkpoint's tensors in memory through the application API: mapped as stored
// (app/mapped.h) and made in another layout (app/layout_stream.h), checked against the
// fixtures transformers wrote and against what convert() writes for every layout.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <vector>

#include "moereg/app/convert.h"
#include "moereg/app/layout_stream.h"
#include "moereg/app/mapped.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_app_in_memory {
namespace {

const char* families[] = {"qwen3_moe", "qwen3_vl_moe", "qwen3_5_moe", "mixtral", "deepseek_v2", "deepseek_v3"};

std::shared_ptr<const app::mapped_checkpoint> map_file(const std::string& path) {
  app::map_request r;
  r.path = path;
  r.identify = false;
  auto m = app::map_checkpoint(r);
  EXPECT_TRUE(m.ok()) << path << ": " << m.error().message;
  return m.ok() ? m.value() : nullptr;
}

std::shared_ptr<const app::layout_stream> stream(const std::string& source, const std::string& to, bool to_bf16 = false) {
  app::layout_stream_request r;
  r.source = source;
  r.to = to;
  r.to_bf16 = to_bf16;
  auto s = app::open_layout_stream(r);
  EXPECT_TRUE(s.ok()) << source << " -> " << to << ": " << s.error().message;
  return s.ok() ? s.value() : nullptr;
}

// Every tensor of the stream equals the reference's tensor of that name, and the two hold
// the same names. `subset`: the reference holds only some of the stream's tensors.
void expect_stream_equals(const app::layout_stream& s, const app::mapped_checkpoint& ref, bool subset = false) {
  std::vector<std::byte> buf(s.largest_bytes());
  std::size_t matched = 0;
  for (std::size_t i = 0; i < s.tensors().size(); ++i) {
    const app::tensor_entry& t = s.tensors()[i];
    const std::byte* want = ref.data(t.name);
    if (!want) {
      EXPECT_TRUE(subset) << t.name << " is made by the stream but not in " << ref.info().path;
      continue;
    }
    const auto& r = *std::find_if(ref.info().tensors.begin(), ref.info().tensors.end(),
                                  [&](const app::tensor_entry& e) { return e.name == t.name; });
    EXPECT_EQ(t.dtype, r.dtype) << t.name;
    EXPECT_EQ(t.shape, r.shape) << t.name;
    ASSERT_EQ(t.bytes, r.bytes) << t.name;
    std::memset(buf.data(), 0xA5, buf.size());
    auto ok = s.produce(i, buf.data(), buf.size());
    ASSERT_TRUE(ok.ok()) << ok.error().message;
    EXPECT_EQ(std::memcmp(buf.data(), want, t.bytes), 0) << t.name << " (" << s.from() << " -> " << s.to() << ")";
    ++matched;
  }
  if (!subset) {
    EXPECT_EQ(matched, ref.info().tensors.size()) << ref.info().path;
  }
  EXPECT_GT(matched, 0u);
}

}  // namespace

TEST(AppInMemory, MappedTensorsPointIntoTheFileAtTheirHeaderOffsets) {
  const std::string file = test::fixture("qwen3_moe/hf/model.safetensors");
  const std::string bytes = test::read_bytes(file);
  app::map_request r;
  r.path = test::fixture("qwen3_moe/hf");
  auto m = app::map_checkpoint(r);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m.value()->info().family, "qwen3_moe");
  EXPECT_EQ(m.value()->info().layout, "hf");
  ASSERT_FALSE(m.value()->info().tensors.empty());
  // The header is 8 bytes of length then JSON; data follows. Each tensor's bytes, found in
  // the file by a reader of our own, equal what the map hands out.
  std::uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  for (const auto& t : m.value()->info().tensors) {
    const std::string key = "\"" + t.name + "\":";
    std::size_t at = bytes.find(key, 8);
    ASSERT_NE(at, std::string::npos) << t.name;
    std::size_t offs = bytes.find("\"data_offsets\":[", at);
    ASSERT_LT(offs, 8 + header);
    std::uint64_t begin = std::stoull(bytes.substr(offs + 16));
    const std::byte* p = m.value()->data(t.name);
    ASSERT_NE(p, nullptr) << t.name;
    EXPECT_EQ(std::memcmp(p, bytes.data() + 8 + header + begin, t.bytes), 0) << t.name;
  }
  EXPECT_EQ(m.value()->data("no.such.tensor"), nullptr);
}

TEST(AppInMemory, MapWithoutIdentificationOpensAnyTensorFile) {
  auto m = map_file(test::fixture("qwen3_moe/moe_block.safetensors"));
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->info().family.empty());
  EXPECT_NE(m->data("input"), nullptr);
  // Identification wants a config: a lone file of reference outputs has none.
  app::map_request r;
  r.path = test::fixture("qwen3_moe/moe_block.safetensors");
  auto refused = app::map_checkpoint(r);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, app::error_kind::input);
  r.identify = false;
  r.layout = "hf";
  refused = app::map_checkpoint(r);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, app::error_kind::usage);
  auto missing = app::map_checkpoint({"/nonexistent/ckpt"});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/nonexistent/ckpt"), std::string::npos) << missing.error().message;
}

TEST(AppInMemory, StreamToTransformersV5EqualsWhatTransformersHolds) {
  for (const char* f : families) {
    auto s = stream(test::fixture(std::string(f) + "/hf"), "transformers_v5");
    auto ref = map_file(test::fixture(std::string(f) + "/transformers_v5.safetensors"));
    ASSERT_TRUE(s && ref) << f;
    expect_stream_equals(*s, *ref);
  }
  for (const char* f : {"qwen3_vl_moe", "qwen3_5_moe"}) {
    auto s = stream(test::fixture(std::string(f) + "/hub"), "transformers_v5");
    auto ref = map_file(test::fixture(std::string(f) + "/transformers_v5.safetensors"));
    ASSERT_TRUE(s && ref) << f;
    expect_stream_equals(*s, *ref);
  }
}

TEST(AppInMemory, StreamReGridsFp8ScalesLikeTheFixture) {
  auto s = stream(test::fixture("deepseek_v3_fp8/hf"), "transformers_v5");
  auto ref = map_file(test::fixture("deepseek_v3_fp8/transformers_v5_layer1_experts.safetensors"));
  ASSERT_TRUE(s && ref);
  expect_stream_equals(*s, *ref, /*subset=*/true);
}

// Every layout of every family, and a dequantizing one: the bytes convert() writes.
TEST(AppInMemory, StreamEqualsConvertForEveryLayout) {
  struct job {
    std::string source, to;
    bool to_bf16 = false;
  };
  std::vector<job> jobs;
  for (const char* f : families) {
    auto m = app::open_model({test::fixture(std::string(f) + "/hf"), "", "", {}});
    ASSERT_TRUE(m.ok()) << m.error().message;
    for (const auto& l : m.value().layouts) jobs.push_back({test::fixture(std::string(f) + "/hf"), l});
  }
  jobs.push_back({test::fixture("deepseek_v3_fp8/hf"), "grouped", true});
  std::size_t compared = 0;
  std::string refused;
  for (const auto& j : jobs) {
    SCOPED_TRACE(j.source + " -> " + j.to);
    test::temp_dir d;
    app::convert_request c;
    c.source = j.source;
    c.output = d / "out";
    c.to = j.to;
    c.to_bf16 = j.to_bf16;
    auto done = app::convert(c);
    if (!done.ok()) {
      // A layout convert refuses for this checkpoint is refused by the stream alike.
      app::layout_stream_request r{j.source, j.to};
      r.to_bf16 = j.to_bf16;
      auto s = app::open_layout_stream(r);
      if (s.ok()) {
        EXPECT_NE(done.error().message.find(".gguf"), std::string::npos) << done.error().message;
      }
      refused += " " + j.source + " -> " + j.to;
      continue;
    }
    std::string file;
    for (const auto& e : fs::directory_iterator(d / "out"))
      if (e.path().extension() == ".safetensors" || e.path().extension() == ".gguf") file = e.path().string();
    ASSERT_FALSE(file.empty());
    auto s = stream(j.source, j.to, j.to_bf16);
    auto ref = map_file(file);
    ASSERT_TRUE(s && ref);
    expect_stream_equals(*s, *ref);
    ++compared;
  }
  // Every layout of every fixture converts, .gguf ones included: all were compared.
  EXPECT_EQ(compared, jobs.size()) << "refused:" << refused;
}

TEST(AppInMemory, StreamErrorsAreProblemsNamingTheCause) {
  app::layout_stream_request r;
  r.source = test::fixture("qwen3_moe/hf");
  r.to = "no_such_layout";
  auto bad = app::open_layout_stream(r);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("no layout 'no_such_layout'"), std::string::npos) << bad.error().message;
  r.to = "";
  EXPECT_EQ(app::open_layout_stream(r).error().kind, app::error_kind::usage);
  r.to = "transformers_v5";
  r.experts = std::make_pair(std::int64_t{4}, std::int64_t{2});
  EXPECT_EQ(app::open_layout_stream(r).error().kind, app::error_kind::usage);
  r.experts.reset();
  r.threads = 5000;  // over max_threads
  EXPECT_EQ(app::open_layout_stream(r).error().kind, app::error_kind::usage);
  r.threads = 0;
  auto s = app::open_layout_stream(r);
  ASSERT_TRUE(s.ok()) << s.error().message;
  std::vector<std::byte> small(1);
  auto too_small = s.value()->produce(0, small.data(), small.size());
  ASSERT_FALSE(too_small.ok());
  EXPECT_EQ(too_small.error().kind, app::error_kind::usage);
  EXPECT_NE(too_small.error().message.find(s.value()->tensors()[0].name), std::string::npos) << too_small.error().message;
  auto past = s.value()->produce(s.value()->tensors().size(), small.data(), small.size());
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().kind, app::error_kind::usage);
}

TEST(AppInMemory, StreamOfAnExpertRangeHoldsOnlyThoseExperts) {
  app::layout_stream_request r;
  r.source = test::fixture("qwen3_moe/hf");
  r.to = "transformers_v5";
  r.experts = std::make_pair(std::int64_t{2}, std::int64_t{5});
  r.threads = 2;
  auto s = app::open_layout_stream(r);
  ASSERT_TRUE(s.ok()) << s.error().message;
  auto full = stream(test::fixture("qwen3_moe/hf"), "transformers_v5");
  auto ref = map_file(test::fixture("qwen3_moe/transformers_v5.safetensors"));
  bool saw_experts = false;
  for (std::size_t i = 0; i < s.value()->tensors().size(); ++i) {
    const auto& t = s.value()->tensors()[i];
    if (t.name.find("mlp.experts.gate_up_proj") == std::string::npos) continue;
    saw_experts = true;
    ASSERT_EQ(t.shape.at(0), 3) << t.name;
    std::vector<std::byte> buf(t.bytes);
    ASSERT_TRUE(s.value()->produce(i, buf.data(), buf.size()).ok());
    const std::uint64_t per_expert = t.bytes / 3;
    EXPECT_EQ(std::memcmp(buf.data(), ref->data(t.name) + 2 * per_expert, t.bytes), 0) << t.name;
  }
  EXPECT_TRUE(saw_experts);
}

}  // namespace test_app_in_memory
