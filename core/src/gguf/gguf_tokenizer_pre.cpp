// SPDX-License-Identifier: Apache-2.0
// llama.cpp's pre-tokenizer names as the HF tokenizer.json parts that do the same splitting,
// for the tokenizer.json written from a .gguf. llama.cpp itself never reads these parts (it
// knows the regexes by name, src/llama-vocab.cpp); transformers does. The regexes are the
// ones llama-vocab.cpp gives for each name (their tokenizer.json originals where it notes one).
#include <map>

#include "gguf_tokenizer_parts.h"

namespace moereg::tokenizer_detail {

namespace {

struct pre_entry {
  std::vector<const char*> splits;  // applied in order, each isolating its matches
  bool nfc = false;                 // an NFC normalizer (Qwen's tokenizers)
};

const std::map<std::string, pre_entry>& table() {
  static const std::map<std::string, pre_entry> t = {
      {"qwen2",
       {{R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
        true}},
      {"qwen35",
       {{R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
        true}},
      {"llama-bpe",
       {{R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
        false}},
      {"deepseek-v3",
       {{"\\p{N}{1,3}",
         "[一-龥぀-ゟ゠-ヿ]+",
         "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
        false}},
      {"deepseek-llm",
       {{"[\r\n]",
         "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
         "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
         "\\s+$",
         "[一-龥ࠀ-一가-퟿]+",
         "\\p{N}+"},
        false}},
  };
  return t;
}

json::value byte_level(bool use_regex) {
  return json::value(json::object{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}});
}

}  // namespace

json::value hf_pre_tokenizer(const std::string& pre) {
  auto it = table().find(pre);
  if (it == table().end()) return byte_level(true);  // GPT-2's own split
  json::array steps;
  for (const char* re : it->second.splits)
    steps.emplace_back(json::object{{"type", "Split"}, {"pattern", json::object{{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}});
  steps.push_back(byte_level(false));
  return json::value(json::object{{"type", "Sequence"}, {"pretokenizers", std::move(steps)}});
}

json::value hf_normalizer(const std::string& pre) {
  auto it = table().find(pre);
  if (it == table().end() || !it->second.nfc) return json::value(nullptr);
  return json::value(json::object{{"type", "NFC"}});
}

}  // namespace moereg::tokenizer_detail
