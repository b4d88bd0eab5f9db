// SPDX-License-Identifier: Apache-2.0
// gguf_tokenizer.h - a checkpoint's tokenizer as llama.cpp's `tokenizer.*` GGUF metadata, and
// back. The facts are llama.cpp's (convert_hf_to_gguf.py `_set_vocab_gpt2` /
// `_create_vocab_sentencepiece`, gguf-py `SpecialVocab`, src/llama-vocab.cpp); the code is ours.
//
// Into a .gguf (`convert --to gguf`), from the tokenizer files beside the checkpoint:
//   tokenizer.json, a byte-level BPE (GPT-2 style; Qwen, DeepSeek, Llama 3):
//     tokenizer.ggml.model "gpt2", .pre (the family's gguf.tokenizer_pre), .tokens,
//     .token_type, .merges
//   tokenizer.model (SentencePiece; Llama 2, Mistral, Mixtral):
//     tokenizer.ggml.model "llama", .pre "default", .tokens, .scores, .token_type
// then what SpecialVocab takes from tokenizer.json, tokenizer_config.json and config.json:
// the bos / eos / unknown / seperator / padding / cls / mask token ids (UINT32), add_bos_token /
// add_eos_token / add_sep_token (BOOL) and the chat template(s).
//
// Out of a .gguf (`convert` to a safetensors layout), the files transformers loads:
//   "gpt2"  -> tokenizer.json + tokenizer_config.json
//   "llama" -> tokenizer.model + tokenizer_config.json
// written so that reading them back gives the same keys (tests/integration/test_gguf_tokenizer.cpp
// checks this on llama.cpp's own vocab-only GGUFs), with the exceptions docs/gguf.md lists.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moereg/base/json.h"
#include "moereg/gguf/gguf_file.h"
#include "moereg/layout/family_spec.h"

namespace moereg {

// llama.cpp's token types (gguf-py TokenType; the same numbers as SentencePiece's piece types).
enum class gguf_token_type : std::int32_t { normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6 };

struct gguf_tokenizer_options {
  // tokenizer.ggml.pre for a BPE tokenizer.json; empty: such a tokenizer is not converted.
  std::string pre;
  // The model's vocabulary (config.json vocab_size, llama.cpp's embedding rows): token ids
  // missing below it become "[PAD<id>]" UNUSED tokens, as llama.cpp's converter pads them. nullopt:
  // as many as the tokenizer has.
  std::optional<std::uint64_t> vocab_size;
  // config.json, for the special ids tokenizer_config.json does not give (`bos_token_id`, ...,
  // also under `text_config`). May be null.
  const json::value* config = nullptr;
};

struct gguf_tokenizer_result {
  gguf_metadata keys;   // tokenizer.* keys, in the order llama.cpp's converter writes them; empty: none
  std::string skipped;  // why tokenizer files that are there were not converted (empty otherwise)
};

// The tokenizer.* keys for the tokenizer files in `dir`: tokenizer.json when it is a byte-level
// BPE, else tokenizer.model. No such file: empty keys, empty `skipped`. A tokenizer.json of another
// kind (WordPiece, Unigram, a SentencePiece-style BPE with byte fallback) without tokenizer.model,
// or a BPE without opts.pre: empty keys and `skipped` says why. Throws moereg::error naming the
// file and the field when a file is malformed (a token id past opts.vocab_size, a merge that is
// not two tokens, a truncated protobuf).
gguf_tokenizer_result gguf_tokenizer_from_dir(const std::string& dir, const gguf_tokenizer_options& opts);

// The same for a checkpoint of `spec`'s family written as a .gguf with `model_metadata` (its
// {arch}.vocab_size pads the vocabulary): opts.pre is the family's gguf.tokenizer_pre.
gguf_tokenizer_result gguf_family_tokenizer(const family_spec& spec, const std::string& dir, const json::value& config,
                                            const gguf_metadata& model_metadata);

// Whether these keys hold a tokenizer (tokenizer.ggml.model present and not "none").
bool gguf_has_tokenizer(const gguf_metadata& metadata);

// The tokenizer files for a GGUF's tokenizer.* keys, as (file name, contents), in the order to
// write them; empty when the keys hold no tokenizer. `where` names the file in messages. A model
// other than "gpt2" and "llama" (bert, t5, ...) gives no files and `skipped` says so. Throws
// moereg::error naming `where` and the key when a key has the wrong type or the arrays disagree
// in length.
std::vector<std::pair<std::string, std::string>> gguf_tokenizer_files(const gguf_metadata& metadata, const std::string& where,
                                                                      std::string* skipped = nullptr);

// SentencePiece's model file (tokenizer.model, a protobuf ModelProto), the parts llama.cpp and
// moereg use: each piece's text, score and type.
struct sentencepiece_piece {
  std::string piece;
  float score = 0;
  gguf_token_type type = gguf_token_type::normal;
};
// Throws moereg::error naming `where` when the bytes are not a ModelProto.
std::vector<sentencepiece_piece> read_sentencepiece_model(const std::string& bytes, const std::string& where);
// A ModelProto with these pieces, a BPE trainer spec (byte_fallback when there are BYTE pieces;
// unk/bos/eos/pad ids as given, -1 for none) and the identity normalizer with a dummy prefix, as
// Llama's tokenizer.model has.
struct sentencepiece_ids {
  std::int32_t unk = 0, bos = 1, eos = 2, pad = -1;
};
std::string write_sentencepiece_model(const std::vector<sentencepiece_piece>& pieces, const sentencepiece_ids& ids);

}  // namespace moereg
