// SPDX-License-Identifier: Apache-2.0
// Which tokenizer a checkpoint directory holds, and its tokenizer.* keys in the order
// llama.cpp's converter writes them (model, pre, tokens, scores, token_type, merges, special).
#include <filesystem>

#include "gguf_tokenizer_parts.h"
#include "moereg/base/error.h"

namespace fs = std::filesystem;

namespace moereg {

using namespace tokenizer_detail;

namespace {

// A byte-level BPE, the only tokenizer.json llama.cpp's "gpt2" vocabulary takes. A BPE with
// byte fallback is SentencePiece's in HF form (Llama 2, Mistral), whose tokenizer.model is read.
bool is_byte_level_bpe(const json::value& tj) {
  const json::value* model = tj.find("model");
  const json::value* type = model ? model->find("type") : nullptr;
  const json::value* fallback = model ? model->find("byte_fallback") : nullptr;
  return type && type->is_string() && type->as_string() == "BPE" && !(fallback && fallback->is_bool() && fallback->as_bool());
}

std::string model_kind(const json::value& tj) {
  const json::value* model = tj.find("model");
  const json::value* type = model ? model->find("type") : nullptr;
  if (!type || !type->is_string()) return "a model without a type";
  const json::value* fallback = model->find("byte_fallback");
  if (type->as_string() == "BPE" && fallback && fallback->is_bool() && fallback->as_bool()) return "a BPE with byte fallback (SentencePiece style)";
  return "a " + type->as_string() + " model";
}

}  // namespace

gguf_tokenizer_result gguf_tokenizer_from_dir(const std::string& dir, const gguf_tokenizer_options& opts) {
  gguf_tokenizer_result r;
  const std::string json_path = (fs::path(dir) / "tokenizer.json").string();
  const bool has_model = fs::is_regular_file(fs::path(dir) / "tokenizer.model");
  std::optional<json::value> tj = read_json_file(json_path);
  if (!tj && !has_model) return r;
  std::optional<json::value> tc = read_json_file((fs::path(dir) / "tokenizer_config.json").string());
  const json::value* tc_ptr = tc ? &*tc : nullptr;
  gguf_metadata& md = r.keys;

  // tokenizer.model first, as llama.cpp's converter tries SentencePiece first where a family
  // can have either (its LlamaModel); a tokenizer.model that is not SentencePiece's (tiktoken's
  // text) leaves the byte-level tokenizer.json to be read, if there is one.
  std::optional<vocab_arrays> spm;
  if (has_model) {
    try {
      spm = sentencepiece_vocab(dir, tc_ptr, opts.vocab_size);
    } catch (const error&) {
      if (!tj || !is_byte_level_bpe(*tj)) throw;
    }
  }
  if (spm) {
    md.emplace_back(key_model, gguf_value::string("llama"));
    md.emplace_back(key_pre, gguf_value::string("default"));
    md.emplace_back(key_tokens, string_array(spm->tokens));
    md.emplace_back(key_scores, f32_array(spm->scores));
    md.emplace_back(key_token_type, i32_array(spm->types));
    append_special_vocab(md, dir, tj ? &*tj : nullptr, tc_ptr, opts.config, spm->tokens.size());
    return r;
  }
  if (is_byte_level_bpe(*tj)) {
    if (opts.pre.empty()) {
      r.skipped = json_path + ": a byte-level BPE tokenizer needs llama.cpp's pre-tokenizer name (tokenizer.ggml.pre), "
                  "which the family's plugin does not declare (gguf.tokenizer_pre, docs/yaml-reference.md)";
      return r;
    }
    vocab_arrays v = bpe_vocab(*tj, json_path, dir, opts.vocab_size);
    md.emplace_back(key_model, gguf_value::string("gpt2"));
    md.emplace_back(key_pre, gguf_value::string(opts.pre));
    md.emplace_back(key_tokens, string_array(v.tokens));
    md.emplace_back(key_token_type, i32_array(v.types));
    if (!v.merges.empty()) md.emplace_back(key_merges, string_array(v.merges));
    append_special_vocab(md, dir, &*tj, tc_ptr, opts.config, std::nullopt);
    return r;
  }
  r.skipped = json_path + ": " + model_kind(*tj) + ", and no tokenizer.model; llama.cpp's vocabulary is made from a byte-level BPE "
              "tokenizer.json or a SentencePiece tokenizer.model";
  return r;
}

gguf_tokenizer_result gguf_family_tokenizer(const family_spec& spec, const std::string& dir, const json::value& config,
                                            const gguf_metadata& model_metadata) {
  gguf_tokenizer_options o;
  o.pre = spec.gguf.tokenizer_pre;
  o.config = &config;
  const std::string vocab_key = spec.gguf.architecture + ".vocab_size";
  for (const auto& [k, v] : model_metadata)
    if (k == vocab_key) o.vocab_size = v.to_uint();
  return gguf_tokenizer_from_dir(dir, o);
}

bool gguf_has_tokenizer(const gguf_metadata& metadata) {
  for (const auto& [k, v] : metadata)
    if (k == key_model) return v.type() == gguf_type::string && v.as_string() != "none";
  return false;
}

}  // namespace moereg
