// SPDX-License-Identifier: Apache-2.0
#include "tokenizer_support.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "moereg/base/json.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace moereg::test {

std::vector<std::string> llamacpp_vocab_files() {
  std::vector<std::string> out;
#ifdef MOEREG_LLAMACPP_DIR
  const fs::path dir = fs::path(MOEREG_LLAMACPP_DIR) / "vocab";
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".gguf") out.push_back(e.path().string());
#endif
  std::sort(out.begin(), out.end());
  return out;
}

gguf_metadata tokenizer_keys(const gguf_metadata& md) {
  gguf_metadata out;
  for (const auto& kv : md)
    if (kv.first.rfind("tokenizer.", 0) == 0) out.push_back(kv);
  return out;
}

namespace {

std::string type_of(const gguf_value& v) {
  std::string t = gguf_type_name(static_cast<std::uint32_t>(v.type()));
  if (v.type() == gguf_type::array) t += " of " + gguf_type_name(static_cast<std::uint32_t>(v.element_type())) + " x" + std::to_string(v.array_size());
  return t;
}

std::string show(const gguf_value& v) {
  switch (v.type()) {
    case gguf_type::string: return "\"" + v.as_string().substr(0, 60) + "\"";
    case gguf_type::f32: case gguf_type::f64: return std::to_string(v.as_f64());
    case gguf_type::boolean: return v.as_bool() ? "true" : "false";
    case gguf_type::i8: case gguf_type::i16: case gguf_type::i32: case gguf_type::i64: return std::to_string(v.as_i64());
    case gguf_type::array: return type_of(v);
    default: return std::to_string(v.as_u64());
  }
}

}  // namespace

std::vector<std::string> key_differences(const gguf_metadata& want, const gguf_metadata& got) {
  std::map<std::string, const gguf_value*> a, b;
  for (const auto& [k, v] : want)
    if (k.rfind("tokenizer.", 0) == 0) a[k] = &v;
  for (const auto& [k, v] : got)
    if (k.rfind("tokenizer.", 0) == 0) b[k] = &v;
  std::vector<std::string> out;
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end()) {
      out.push_back(k + ": missing (want " + show(*v) + ")");
      continue;
    }
    const gguf_value& g = *it->second;
    if (type_of(*v) != type_of(g)) {
      out.push_back(k + ": " + type_of(g) + ", want " + type_of(*v));
    } else if (!(*v == g)) {
      std::string where;
      if (v->type() == gguf_type::array)
        for (std::uint64_t i = 0; i < v->array_size(); ++i)
          if (!(v->item(i) == g.item(i))) {
            where = " first at item " + std::to_string(i) + ": " + show(g.item(i)) + ", want " + show(v->item(i));
            break;
          }
      out.push_back(k + ": differs" + (where.empty() ? ": " + show(g) + ", want " + show(*v) : where));
    }
  }
  for (const auto& [k, v] : b)
    if (!a.count(k)) out.push_back(k + ": extra (" + show(*v) + ")");
  return out;
}

void write_small_bpe_tokenizer(const std::string& dir) {
  fs::create_directories(dir);
  json::object vocab;
  std::uint64_t id = 0;
  for (char c = '!'; c <= '~'; ++c) vocab.emplace_back(std::string(1, c), id++);
  vocab.emplace_back("\xC4\xA0", id++);  // Ġ: the space byte
  vocab.emplace_back("\xC4\x8A", id++);  // Ċ: the newline byte
  const char* merges[][2] = {{"\xC4\xA0", "t"}, {"h", "e"},  {"\xC4\xA0t", "he"}, {"i", "n"},          {"\xC4\xA0", "w"},
                             {"o", "r"},        {"\xC4\xA0w", "or"}, {"l", "d"},   {"\xC4\xA0wor", "ld"}, {"H", "e"},
                             {"l", "l"},        {"He", "ll"},  {"Hell", "o"}};
  json::array merge_list;
  for (const auto& m : merges) {
    vocab.emplace_back(std::string(m[0]) + m[1], id++);
    merge_list.emplace_back(json::array{json::value(m[0]), json::value(m[1])});
  }
  json::array added;
  auto add = [&](std::uint64_t i, const char* content, bool special) {
    added.emplace_back(json::object{{"id", i},        {"content", content},  {"single_word", false}, {"lstrip", false},
                                    {"rstrip", false}, {"normalized", false}, {"special", special}});
  };
  add(109, "<|endoftext|>", true);
  add(110, "<|im_start|>", true);
  add(111, "<|im_end|>", true);
  add(112, "<tool>", false);
  json::value byte_level(json::object{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}});
  json::object tj{{"version", "1.0"},
                  {"truncation", nullptr},
                  {"padding", nullptr},
                  {"added_tokens", std::move(added)},
                  {"normalizer", json::object{{"type", "NFC"}}},
                  {"pre_tokenizer", byte_level},
                  {"post_processor", byte_level},
                  {"decoder", byte_level},
                  {"model", json::object{{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"fuse_unk", false},
                                         {"byte_fallback", false}, {"vocab", std::move(vocab)}, {"merges", std::move(merge_list)}}}};
  write_bytes(dir + "/tokenizer.json", json::dump(json::value(std::move(tj)), 2));
  write_bytes(dir + "/tokenizer_config.json", R"({
  "add_bos_token": false,
  "bos_token": null,
  "eos_token": "<|im_end|>",
  "pad_token": "<|endoftext|>",
  "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
  "tokenizer_class": "Qwen2Tokenizer"
})");
}

}  // namespace moereg::test
