// SPDX-License-Identifier: Apache-2.0
// gguf_tokenizer_parts.h - what the gguf_tokenizer_*.cpp files share (private to core).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "moereg/base/json.h"
#include "moereg/gguf/gguf_tokenizer.h"

namespace moereg::tokenizer_detail {

// llama.cpp's key names.
inline constexpr const char* key_model = "tokenizer.ggml.model";
inline constexpr const char* key_pre = "tokenizer.ggml.pre";
inline constexpr const char* key_tokens = "tokenizer.ggml.tokens";
inline constexpr const char* key_scores = "tokenizer.ggml.scores";
inline constexpr const char* key_token_type = "tokenizer.ggml.token_type";
inline constexpr const char* key_merges = "tokenizer.ggml.merges";
inline constexpr const char* key_chat_template = "tokenizer.chat_template";
inline constexpr const char* key_chat_templates = "tokenizer.chat_templates";

// SpecialVocab's token types, the config names they go by ("bos" -> bos_token,
// bos_token_id) and their GGUF keys. cls has no key: gguf-py has no writer for it, so llama.cpp's
// converter skips it (and so do we).
struct special_kind {
  const char* name;
  const char* id_key;   // tokenizer.ggml.<...>_token_id, or nullptr
  const char* add_key;  // tokenizer.ggml.add_<...>_token, or nullptr
};
const std::vector<special_kind>& special_kinds();  // bos, eos, unk, sep, pad, cls, mask, eot, eom

// The vocabulary a converter made, before the special tokens.
struct vocab_arrays {
  std::vector<std::string> tokens;
  std::vector<std::int32_t> types;
  std::vector<float> scores;        // SentencePiece only
  std::vector<std::string> merges;  // BPE only
};

// Encoded GGUF arrays (built directly: a vocabulary has 10^5 items).
gguf_value string_array(const std::vector<std::string>& items);
gguf_value i32_array(const std::vector<std::int32_t>& items);
gguf_value f32_array(const std::vector<float>& items);

// convert_hf_to_gguf.py's does_token_look_special: added tokens that should be CONTROL although
// their tokenizer does not mark them special (<|...|>, <｜...｜>, <unused...>, <pad>, <mask>, ...).
bool looks_special(std::string_view token);

// A JSON file of the directory, or nullopt when absent. Throws moereg::error naming it when
// it is not JSON.
std::optional<json::value> read_json_file(const std::string& path);

// SpecialVocab: the special token ids, add_*_token flags and chat template(s) from
// tokenizer.json (its added_tokens and post_processor; may be null), tokenizer_config.json (may be
// null), the chat_template.jinja / chat_template.json files of `dir` and config.json (may be
// null), appended to `out` in gguf-py's order. Ids at or past n_vocab (when given) are dropped, as
// gguf-py drops them.
void append_special_vocab(gguf_metadata& out, const std::string& dir, const json::value* tokenizer_json,
                          const json::value* tokenizer_config, const json::value* config, std::optional<std::uint64_t> n_vocab);

// tokenizer.json's byte-level BPE -> tokens, types, merges (convert_hf_to_gguf.py get_vocab_base
// and SpecialVocab's merges). `path` names the file in messages.
vocab_arrays bpe_vocab(const json::value& tokenizer_json, const std::string& path, const std::string& dir,
                       std::optional<std::uint64_t> vocab_size);

// tokenizer.model (+ added_tokens.json, tokenizer_config.json's added_tokens_decoder) -> tokens,
// scores, types (convert_hf_to_gguf.py _create_vocab_sentencepiece).
vocab_arrays sentencepiece_vocab(const std::string& dir, const json::value* tokenizer_config,
                                 std::optional<std::uint64_t> vocab_size);

// HF's pre_tokenizer and normalizer for llama.cpp's pre-tokenizer name (the split regexes
// llama-vocab.cpp uses for it, then ByteLevel); GPT-2's for a name not in the table.
json::value hf_pre_tokenizer(const std::string& pre);
json::value hf_normalizer(const std::string& pre);

}  // namespace moereg::tokenizer_detail
