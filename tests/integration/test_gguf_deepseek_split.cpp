// SPDX-License-Identifier: Apache-2.0
// deepseek2's attention in a .gguf: moereg writes kv_b_proj split per head into attn_k_b
// (transposed) and attn_v_b with llama.cpp's MLA keys, byte for byte what llama.cpp's own
// converter writes (../shared/fixtures/gguf_llamacpp), and reads back both that form and the
// older one that keeps attn_kv_b whole.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "conversion_support.h"
#include "moereg/base/json.h"
#include "moereg/checkpoint/checkpoint.h"
#include "moereg/gguf/gguf_file.h"
#include "moereg/gguf/gguf_writer.h"
#include "moereg/layout/family_catalog.h"
#include "test_support.h"

namespace moereg::test {
// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_gguf_deepseek_split {
namespace {

const char* const families[] = {"deepseek_v2", "deepseek_v3"};

std::string bytes_of(const gguf_file& f, const gguf_tensor& t) { return std::string(reinterpret_cast<const char*>(f.data(t)), t.nbytes); }

TEST(GgufDeepseekSplit, WrittenLikeLlamaCppsConverterByteForByte) {
  for (const char* fam : families) {
    SCOPED_TRACE(fam);
    temp_dir d;
    convert(fixture(std::string(fam) + "/hf"), d / "g", "gguf");
    gguf_file ours(d / "g/model.gguf"), theirs(fixture("gguf_llamacpp/" + std::string(fam) + ".gguf"));
    EXPECT_EQ(ours.find_tensor("blk.0.attn_kv_b.weight"), nullptr);
    int split = 0;
    for (const auto& t : theirs.tensors()) {
      if (t.name.find("attn_k_b") == std::string::npos && t.name.find("attn_v_b") == std::string::npos) continue;
      ++split;
      const gguf_tensor* o = ours.find_tensor(t.name);
      ASSERT_NE(o, nullptr) << t.name;
      EXPECT_EQ(o->ne, t.ne) << t.name;
      EXPECT_EQ(o->type, t.type) << t.name;
      EXPECT_EQ(bytes_of(ours, *o), bytes_of(theirs, t)) << t.name;
    }
    EXPECT_EQ(split, 2 * 3) << "k_b and v_b in each of the 3 layers";
    for (const char* key : {"attention.head_count_kv", "attention.key_length", "attention.value_length",
                            "attention.key_length_mla", "attention.value_length_mla", "attention.kv_lora_rank"}) {
      const std::string k = std::string("deepseek2.") + key;
      ASSERT_TRUE(ours.get_uint(k) && theirs.get_uint(k)) << k;
      EXPECT_EQ(*ours.get_uint(k), *theirs.get_uint(k)) << k;
    }
  }
}

TEST(GgufDeepseekSplit, KeyRowsAreTransposedPerHead) {
  // The fixtures have qk_nope = v_head_dim = kv_lora_rank, so shapes alone cannot tell the
  // parts or their orientation apart: check element placement against kv_b_proj itself.
  temp_dir d;
  convert(fixture("deepseek_v3/hf"), d / "g", "gguf");
  gguf_file g(d / "g/model.gguf");
  checkpoint hf = checkpoint::open(fixture("deepseek_v3/hf"));
  json::value c = json::parse_file(fixture("deepseek_v3/hf/config.json"));
  const std::int64_t heads = c.find_path("num_attention_heads")->as_int(), nope = c.find_path("qk_nope_head_dim")->as_int(),
                     v = c.find_path("v_head_dim")->as_int(), rank = c.find_path("kv_lora_rank")->as_int();
  const checkpoint::entry* kv = hf.find("model.layers.1.self_attn.kv_b_proj.weight");
  const gguf_tensor *kb = g.find_tensor("blk.1.attn_k_b.weight"), *vb = g.find_tensor("blk.1.attn_v_b.weight");
  ASSERT_TRUE(kv && kb && vb);
  EXPECT_EQ(kb->shape, (std::vector<std::int64_t>{heads, rank, nope}));
  EXPECT_EQ(vb->shape, (std::vector<std::int64_t>{heads, v, rank}));
  auto at = [](const std::byte* base, std::int64_t i) { return base + 2 * i; };  // BF16 element i
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t r = 0; r < rank; ++r) {
      for (std::int64_t n = 0; n < nope; ++n)
        ASSERT_EQ(std::memcmp(at(g.data(*kb), (h * rank + r) * nope + n), at(kv->data(), (h * (nope + v) + n) * rank + r), 2), 0)
            << "k_b head " << h << " rank " << r << " row " << n;
      for (std::int64_t x = 0; x < v; ++x)
        ASSERT_EQ(std::memcmp(at(g.data(*vb), (h * v + x) * rank + r), at(kv->data(), (h * (nope + v) + nope + x) * rank + r), 2), 0)
            << "v_b head " << h << " row " << x << " rank " << r;
    }
}

TEST(GgufDeepseekSplit, RoundTripsThroughEveryLayout) {
  // hf -> gguf (split) -> gguf (read split, written split again) -> transformers_v5 equals the fixture.
  temp_dir d;
  convert(fixture("deepseek_v2/hf"), d / "g1", "gguf");
  convert(d / "g1", d / "g2", "gguf");
  // From the bare file: the config made from the *_mla keys.
  command_result r = run_moereg("convert " + (d / "g2/model.gguf") + " " + (d / "v5") + " --to transformers_v5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_moereg("verify " + (d / "v5") + " " + fixture("deepseek_v2/hf"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run_moereg("verify " + (d / "g2/model.gguf") + " " + fixture("deepseek_v2/hf"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// llama.cpp's deepseek2 file rewritten in the older form: attn_kv_b whole (each head's k rows
// untransposed, then its v rows), no *_mla keys, per-head key/value lengths, one KV head per head.
void write_unsplit(const std::string& from, const std::string& to) {
  gguf_file src(from);
  const std::string a = "deepseek2.attention.";
  const std::uint64_t heads = *src.get_uint("deepseek2.attention.head_count"), rank = *src.get_uint(a + "kv_lora_rank"),
                      nope = *src.get_uint(a + "key_length_mla") - *src.get_uint("deepseek2.rope.dimension_count"),
                      v = *src.get_uint(a + "value_length_mla");
  gguf_metadata md;
  for (const auto& [k, val] : src.metadata()) {
    if (k == a + "key_length_mla" || k == a + "value_length_mla") continue;
    if (k == a + "head_count_kv") md.emplace_back(k, gguf_value::u32(static_cast<std::uint32_t>(heads)));
    else if (k == a + "key_length") md.emplace_back(k, gguf_value::u32(static_cast<std::uint32_t>(*src.get_uint(a + "key_length_mla"))));
    else if (k == a + "value_length") md.emplace_back(k, gguf_value::u32(static_cast<std::uint32_t>(v)));
    else md.emplace_back(k, val);
  }
  std::vector<gguf_tensor_spec> specs;
  std::vector<std::string> data;
  for (const auto& t : src.tensors()) {
    if (t.name.find("attn_v_b") != std::string::npos) continue;
    const std::size_t kb = t.name.find("attn_k_b");
    if (kb == std::string::npos) {
      specs.push_back({t.name, t.type, t.shape});
      data.push_back(bytes_of(src, t));
      continue;
    }
    const std::string layer = t.name.substr(0, kb);
    const gguf_tensor* vt = src.find_tensor(layer + "attn_v_b.weight");
    ASSERT_NE(vt, nullptr);
    std::string kv(heads * (nope + v) * rank * 2, '\0');
    const char *k_b = reinterpret_cast<const char*>(src.data(t)), *v_b = reinterpret_cast<const char*>(src.data(*vt));
    for (std::uint64_t h = 0; h < heads; ++h)
      for (std::uint64_t r = 0; r < rank; ++r) {
        for (std::uint64_t n = 0; n < nope; ++n)
          std::memcpy(&kv[2 * ((h * (nope + v) + n) * rank + r)], k_b + 2 * ((h * rank + r) * nope + n), 2);
        for (std::uint64_t x = 0; x < v; ++x)
          std::memcpy(&kv[2 * ((h * (nope + v) + nope + x) * rank + r)], v_b + 2 * ((h * v + x) * rank + r), 2);
      }
    specs.push_back({layer + "attn_kv_b.weight", t.type,
                     {static_cast<std::int64_t>(heads * (nope + v)), static_cast<std::int64_t>(rank)}});
    data.push_back(std::move(kv));
  }
  gguf_writer w(to, md, specs);
  for (std::size_t i = 0; i < data.size(); ++i) w.write(i, 0, data[i].data(), data[i].size());
  w.commit();
}

TEST(GgufDeepseekSplit, UnsplitFormReadsBackAndIsWrittenSplit) {
  for (const char* fam : families) {
    SCOPED_TRACE(fam);
    temp_dir d;
    write_unsplit(fixture("gguf_llamacpp/" + std::string(fam) + ".gguf"), d / "unsplit.gguf");
    command_result r = run_moereg("verify " + (d / "unsplit.gguf") + " " + fixture(std::string(fam) + "/hf"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    // Converted to gguf it becomes llama.cpp's split form, equal to llama.cpp's own file.
    r = run_moereg("convert " + (d / "unsplit.gguf") + " " + (d / "g") + " --to gguf");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    gguf_file ours(d / "g/model.gguf"), theirs(fixture("gguf_llamacpp/" + std::string(fam) + ".gguf"));
    for (const char* name : {"blk.2.attn_k_b.weight", "blk.2.attn_v_b.weight"}) {
      const gguf_tensor *a = ours.find_tensor(name), *b = theirs.find_tensor(name);
      ASSERT_TRUE(a && b) << name;
      EXPECT_EQ(bytes_of(ours, *a), bytes_of(theirs, *b)) << name;
    }
    EXPECT_EQ(ours.get_uint("deepseek2.attention.key_length_mla"), theirs.get_uint("deepseek2.attention.key_length_mla"));
  }
}

TEST(GgufDeepseekSplit, MissingPartIsOneErrorNamingIt) {
  temp_dir d;
  gguf_file src(fixture("gguf_llamacpp/deepseek_v2.gguf"));
  gguf_metadata md = src.metadata();
  std::vector<gguf_tensor_spec> specs;
  std::vector<const gguf_tensor*> kept;
  for (const auto& t : src.tensors())
    if (t.name != "blk.1.attn_v_b.weight") specs.push_back({t.name, t.type, t.shape}), kept.push_back(&t);
  {
    gguf_writer w(d / "m.gguf", md, specs);
    for (std::size_t i = 0; i < kept.size(); ++i) w.write(i, 0, src.data(*kept[i]), kept[i]->nbytes);
    w.commit();
  }
  command_result r = run_moereg("convert " + (d / "m.gguf") + " " + (d / "out") + " --to hf");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("blk.1.attn_v_b.weight: missing, but blk.1.attn_k_b.weight holds part of "
                          "'model.layers.1.self_attn.kv_b_proj.weight'"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(d / "out/model.safetensors"));
}

TEST(GgufDeepseekSplit, DequantizingIntoTheSplitIsRefusedNamingTheWeight) {
  // --dtype bf16 makes an FP8 kv_b_proj whole; writing it so beside the MLA keys would give a
  // file llama.cpp cannot load, so the conversion names the weight and writes nothing.
  temp_dir d;
  command_result r = run_moereg("convert " + fixture("deepseek_v3_fp8/hf") + " " + (d / "g") + " --to gguf --dtype bf16");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_HAS(r.output, "model.layers.1.self_attn.kv_b_proj.weight: quantized (fp8");
  EXPECT_HAS(r.output, "cuts 'model.layers.1.self_attn.kv_b_proj.weight' per head (splits)");
  EXPECT_FALSE(std::filesystem::exists(d / "g"));
}

TEST(GgufDeepseekSplit, SplitsDropsAndArrayMetadataAreCheckedInTheManifest) {
  YAML::Node root = YAML::LoadFile(source_catalog().find("deepseek")->path);
  YAML::Node gguf = root["layouts"]["gguf"];
  gguf["splits"][0]["parts"][1]["key"] = "blk.attn_v_b.weight";    // lost its {layer}
  gguf["splits"][0].remove("heads");
  gguf["drops"] = "model.visual.{rest}";                             // not a list
  root["gguf"]["metadata"].push_back(YAML::Load("{key: rope.dimension_sections, config: x, type: i32_array}"));
  family_catalog none;
  auto errors = none.check({"deepseek", "p.yaml", root}).problems;
  std::string all;
  for (const auto& e : errors) all += e + "\n";
  EXPECT_HAS(all, "a split needs 'canonical' (name template), 'heads' (config field) and 'parts'");
  EXPECT_HAS(all, "drops must be a list of canonical name templates");
  EXPECT_HAS(all, "an i32_array entry needs 'length', the item count written (1 to 64)");
  gguf["splits"][0]["heads"] = "num_attention_heads";
  errors = none.check({"deepseek", "p.yaml", root}).problems;
  all.clear();
  for (const auto& e : errors) all += e + "\n";
  EXPECT_HAS(all, "split part 'blk.attn_v_b.weight' must use the placeholders of 'model.layers.{layer}.self_attn.kv_b_proj.weight'");
}

}  // namespace
}  // namespace test_gguf_deepseek_split
}  // namespace moereg::test
