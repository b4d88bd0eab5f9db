// SPDX-License-Identifier: Apache-2.0
// A byte-level BPE tokenizer.json as llama.cpp's "gpt2" vocabulary (convert_hf_to_gguf.py
// get_vocab_base, SpecialVocab's merges): one token per id up to the vocabulary size, added
// tokens typed CONTROL or USER_DEFINED, ids the tokenizer lacks as "[PAD<id>]" UNUSED.
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <unordered_map>

#include "gguf_tokenizer_parts.h"
#include "moereg/base/error.h"
#include "moereg/base/regular_file.h"

namespace fs = std::filesystem;

namespace moereg::tokenizer_detail {

namespace {

struct added_token {
  std::string content;
  bool special = false;
};

// SpecialVocab: a space inside a merge's part is written as U+0120 ('Ġ', chr(ord(' ') + 256)),
// since the GGUF form separates the two parts with a space.
std::string encode_spaces(const std::string& part) {
  std::string out;
  for (char c : part) out += c == ' ' ? std::string("\xC4\xA0") : std::string(1, c);
  return out;
}

std::vector<std::string> merges_of(const json::value& model, const std::string& path) {
  std::vector<std::string> out;
  const json::value* m = model.find("merges");
  if (!m || !m->is_array()) return out;
  const json::array& list = m->as_array();
  out.reserve(list.size());
  for (std::size_t i = 0; i < list.size(); ++i) {
    const json::value& e = list[i];
    std::string merge;
    if (e.is_string()) {
      merge = e.as_string();
    } else if (e.is_array() && e.as_array().size() == 2 && e.as_array()[0].is_string() && e.as_array()[1].is_string()) {
      merge = encode_spaces(e.as_array()[0].as_string()) + " " + encode_spaces(e.as_array()[1].as_string());
    } else {
      throw error(path + ": model.merges[" + std::to_string(i) + "] is " + json::describe(&e) +
                  ", expected \"left right\" or [\"left\", \"right\"]");
    }
    // llama.cpp splits a merge at its first space after the first byte and aborts without one.
    if (merge.size() < 3 || merge.find(' ', 1) == std::string::npos || merge.find(' ', 1) + 1 == merge.size())
      throw error(path + ": model.merges[" + std::to_string(i) + "] = \"" + merge + "\", expected two tokens separated by a space");
    out.push_back(std::move(merge));
  }
  return out;
}

// merges.txt (GPT-2's file beside vocab.json): one "left right" per line, an optional "#version" first line.
std::vector<std::string> merges_txt(const std::string& dir) {
  std::vector<std::string> out;
  const fs::path path = fs::path(dir) / "merges.txt";
  if (!fs::exists(path)) return out;
  std::istringstream in(read_regular_file(path.string()));
  std::string line;
  bool first = true;
  while (std::getline(in, line)) {
    if (first && line.rfind('#', 0) == 0) {
      first = false;
      continue;
    }
    first = false;
    std::vector<std::string> parts;
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
      std::size_t j = i;
      while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j]))) ++j;
      if (j > i) parts.push_back(line.substr(i, j - i));
      i = j;
    }
    if (parts.size() == 2) out.push_back(parts[0] + " " + parts[1]);  // others: gguf-py warns and skips
  }
  return out;
}

}  // namespace

vocab_arrays bpe_vocab(const json::value& tj, const std::string& path, const std::string& dir,
                       std::optional<std::uint64_t> vocab_size) {
  const json::value* model = tj.find("model");
  const json::value* vocab = model ? model->find("vocab") : nullptr;
  if (!vocab || !vocab->is_object()) throw error(path + ": model.vocab is " + json::describe(vocab) + ", expected an object of token -> id");
  // The tokenizer's whole vocabulary (transformers' get_vocab: the model's, then the added
  // tokens), by id; the added tokens by id and by content.
  std::unordered_map<std::uint64_t, std::string> by_id;
  std::unordered_map<std::string, std::uint64_t> contents;
  std::map<std::uint64_t, added_token> added;
  std::unordered_map<std::string, std::uint64_t> added_content;
  auto id_of = [&](const json::value& v, const std::string& what) -> std::uint64_t {
    if (!v.is_integer() || v.as_int() < 0 || v.as_int() > 0x7FFFFFFF)
      throw error(path + ": " + what + " has id " + json::describe(&v) + ", expected an integer from 0 to 2^31-1");
    return static_cast<std::uint64_t>(v.as_int());
  };
  for (const auto& [tok, id] : vocab->as_object()) {
    const std::uint64_t i = id_of(id, "model.vocab token \"" + tok + "\"");
    by_id[i] = tok;
    contents[tok] = i;
  }
  if (const json::value* a = tj.find("added_tokens"); a && a->is_array()) {
    for (std::size_t k = 0; k < a->as_array().size(); ++k) {
      const json::value& t = a->as_array()[k];
      const json::value* c = t.find("content");
      const json::value* id = t.find("id");
      const std::string what = "added_tokens[" + std::to_string(k) + "]";
      if (!c || !c->is_string() || !id) throw error(path + ": " + what + " needs \"id\" and a string \"content\"");
      const std::uint64_t i = id_of(*id, what);
      const json::value* sp = t.find("special");
      added[i] = {c->as_string(), sp && sp->is_bool() && sp->as_bool()};
      added_content[c->as_string()] = i;
      by_id[i] = c->as_string();
      contents[c->as_string()] = i;
    }
  }
  const std::uint64_t n = vocab_size.value_or(contents.size());
  for (const auto& [i, tok] : by_id)
    if (i >= n)
      throw error(path + ": token \"" + tok + "\" has id " + std::to_string(i) + ", past the model's vocabulary of " + std::to_string(n) +
                  " (config.json vocab_size)");

  vocab_arrays v;
  v.tokens.reserve(n);
  v.types.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    auto it = by_id.find(i);
    if (it == by_id.end()) {
      v.tokens.push_back("[PAD" + std::to_string(i) + "]");
      v.types.push_back(static_cast<std::int32_t>(gguf_token_type::unused));
      continue;
    }
    std::string token = it->second;
    if (!added_content.count(token)) {
      v.tokens.push_back(std::move(token));
      v.types.push_back(static_cast<std::int32_t>(gguf_token_type::normal));
      continue;
    }
    // llama.cpp takes CONTROL and USER_DEFINED tokens as already normalized. (gguf-py also
    // re-encodes a non-normalized added token through transformers, which gives it back
    // unchanged for the byte-level tokenizers this reads.)
    auto a = added.find(i);
    if ((a != added.end() && a->second.special) || looks_special(token)) {
      v.types.push_back(static_cast<std::int32_t>(gguf_token_type::control));
    } else {
      // Pre-normalized user-defined spaces: U+2581 ('▁') becomes ' ' (gguf-py, for Gemma).
      for (std::size_t p; (p = token.find("\xE2\x96\x81")) != std::string::npos;) token.replace(p, 3, " ");
      v.types.push_back(static_cast<std::int32_t>(gguf_token_type::user_defined));
    }
    v.tokens.push_back(std::move(token));
  }
  v.merges = merges_of(*model, path);
  if (v.merges.empty()) v.merges = merges_txt(dir);
  return v;
}

}  // namespace moereg::tokenizer_detail
