// SPDX-License-Identifier: Apache-2.0
// A GGUF's tokenizer.* keys back as the files transformers loads. They are laid out so that
// gguf_tokenizer_from_dir (llama.cpp's converter) reads the same keys back: each token where
// that reader takes its type from (NORMAL in model.vocab, CONTROL as a special added token,
// USER_DEFINED as a plain one, "[PAD<id>]" UNUSED left out to be padded again), the special
// tokens by content in tokenizer_config.json, the add_* flags both there and in the post-processor.
#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "gguf_tokenizer_parts.h"
#include "moereg/base/error.h"

namespace moereg {

using namespace tokenizer_detail;

namespace {

class gguf_tokenizer_keys {
 public:
  gguf_tokenizer_keys(const gguf_metadata& md, const std::string& where) : where_(where) {
    for (const auto& [k, v] : md)
      if (k.rfind("tokenizer.", 0) == 0) keys_.emplace(k, &v);
  }
  const gguf_value* find(const std::string& k) const {
    auto it = keys_.find(k);
    return it == keys_.end() ? nullptr : it->second;
  }
  std::string string(const std::string& k) const {
    const gguf_value* v = find(k);
    if (!v) return {};
    if (v->type() != gguf_type::string) bad(k, "a STRING", *v);
    return v->as_string();
  }
  std::vector<std::string> strings(const std::string& k) const {
    const gguf_value* v = find(k);
    if (!v) return {};
    if (v->type() != gguf_type::array || v->element_type() != gguf_type::string) bad(k, "an ARRAY of STRING", *v);
    std::vector<std::string> out;
    out.reserve(v->array_size());
    for (auto s : v->string_items()) out.emplace_back(s);
    return out;
  }
  template <class T>
  std::vector<T> numbers(const std::string& k, gguf_type want, std::size_t n) const {
    const gguf_value* v = find(k);
    if (!v) return {};
    if (v->type() != gguf_type::array || v->element_type() != want)
      bad(k, "an ARRAY of " + gguf_type_name(static_cast<std::uint32_t>(want)), *v);
    if (v->array_size() != n)
      throw error(where_ + ": gguf metadata '" + k + "' has " + std::to_string(v->array_size()) + " items, expected " + std::to_string(n) +
                  " (one per token of tokenizer.ggml.tokens)");
    std::vector<T> out(n);
    std::memcpy(out.data(), v->encoded_items().data(), n * sizeof(T));
    return out;
  }
  std::optional<std::uint64_t> id(const std::string& k, std::size_t n_tokens) const {
    const gguf_value* v = find(k);
    if (!v) return std::nullopt;
    auto id = v->to_uint();
    if (!id) bad(k, "an unsigned integer", *v);
    if (*id >= n_tokens)
      throw error(where_ + ": gguf metadata '" + k + "' = " + std::to_string(*id) + ", past the " + std::to_string(n_tokens) + " tokens");
    return id;
  }
  std::optional<bool> flag(const std::string& k) const {
    const gguf_value* v = find(k);
    if (!v) return std::nullopt;
    if (v->type() != gguf_type::boolean) bad(k, "a BOOL", *v);
    return v->as_bool();
  }

 private:
  [[noreturn]] void bad(const std::string& k, const std::string& want, const gguf_value& v) const {
    std::string found = gguf_type_name(static_cast<std::uint32_t>(v.type()));
    if (v.type() == gguf_type::array) found += " of " + gguf_type_name(static_cast<std::uint32_t>(v.element_type()));
    throw error(where_ + ": gguf metadata '" + k + "': expected " + want + ", found " + found);
  }
  std::string where_;
  std::map<std::string, const gguf_value*> keys_;
};

struct special_ids {
  std::vector<std::pair<std::string, std::uint64_t>> ids;  // "bos" -> id, for those the file has
  std::vector<std::pair<std::string, bool>> add;           // "bos" -> add_bos_token
  std::optional<std::uint64_t> of(const std::string& typ) const {
    for (const auto& [t, id] : ids)
      if (t == typ) return id;
    return std::nullopt;
  }
  bool adds(const std::string& typ) const {
    for (const auto& [t, on] : add)
      if (t == typ) return on;
    return false;
  }
};

special_ids read_specials(const gguf_tokenizer_keys& k, std::size_t n_tokens) {
  special_ids s;
  for (const auto& kind : special_kinds()) {
    if (kind.id_key)
      if (auto id = k.id(kind.id_key, n_tokens)) s.ids.emplace_back(kind.name, *id);
    if (kind.add_key)
      if (auto on = k.flag(kind.add_key)) s.add.emplace_back(kind.name, *on);
  }
  return s;
}

json::value added_token(std::uint64_t id, const std::string& content, bool special) {
  return json::value(json::object{{"id", id},          {"content", content},     {"single_word", false}, {"lstrip", false},
                                  {"rstrip", false},   {"normalized", false},    {"special", special}});
}

// TemplateProcessing: bos before a sequence and eos after it, as the file's add_* flags say
// (the reader takes add_bos/add_eos from it, and tokenizer_config.json agrees). A pair is
// "[bos] A [sep] B [eos]": the separator only where the file adds one, since the reader takes
// any token between A and B for an add_sep_token setting the file may not have.
json::value template_processing(const special_ids& s, const std::vector<std::string>& tokens) {
  auto bos = s.of("bos"), eos = s.of("eos"), sep = s.of("sep");
  const bool add_bos = bos && s.adds("bos"), add_eos = eos && s.adds("eos"), add_sep = sep && s.adds("sep");
  if (!add_bos && !add_eos) return json::value(nullptr);
  auto special = [&](std::uint64_t id) { return json::value(json::object{{"SpecialToken", json::object{{"id", tokens[id]}, {"type_id", 0}}}}); };
  auto seq = [](const char* id, int type) { return json::value(json::object{{"Sequence", json::object{{"id", id}, {"type_id", type}}}}); };
  json::array single, pair;
  json::object map;
  if (add_bos) single.push_back(special(*bos)), pair.push_back(special(*bos));
  single.push_back(seq("A", 0)), pair.push_back(seq("A", 0));
  if (add_eos) single.push_back(special(*eos));
  if (add_sep) pair.push_back(special(*sep));
  pair.push_back(seq("B", 1));
  if (add_eos) pair.push_back(special(*eos));
  for (auto id : {add_bos ? bos : std::nullopt, add_eos ? eos : std::nullopt, add_sep ? sep : std::nullopt})
    if (id && !json::value(map).find(tokens[*id]))  // bos and eos may be one token
      map.emplace_back(tokens[*id], json::object{{"id", tokens[*id]}, {"ids", json::array{json::value(*id)}}, {"tokens", json::array{json::value(tokens[*id])}}});
  return json::value(json::object{{"type", "TemplateProcessing"}, {"single", std::move(single)}, {"pair", std::move(pair)}, {"special_tokens", std::move(map)}});
}

// tokenizer_config.json: the special tokens by content, the add_* flags, the chat template(s).
std::string tokenizer_config(const gguf_tokenizer_keys& k, const special_ids& s, const std::vector<std::string>& tokens,
                             const std::string& tokenizer_class, json::object added_decoder) {
  json::object c;
  for (const auto& [typ, on] : s.add) c.emplace_back("add_" + typ + "_token", on);
  if (!added_decoder.empty()) c.emplace_back("added_tokens_decoder", std::move(added_decoder));
  for (const auto& [typ, id] : s.ids)
    if (typ != "eot" && typ != "eom") c.emplace_back(typ + "_token", tokens[id]);  // transformers knows no eot_token
  // Named templates as gguf-py reads them back: a list with "default" and each tokenizer.chat_template.<name>.
  std::vector<std::string> names = k.strings(key_chat_templates);
  std::string plain = k.string(key_chat_template);
  if (!names.empty()) {
    json::array list;
    if (k.find(key_chat_template)) list.emplace_back(json::object{{"name", "default"}, {"template", plain}});
    for (const auto& n : names) list.emplace_back(json::object{{"name", n}, {"template", k.string(std::string(key_chat_template) + "." + n)}});
    c.emplace_back("chat_template", std::move(list));
  } else if (k.find(key_chat_template)) {
    c.emplace_back("chat_template", plain);
  }
  c.emplace_back("clean_up_tokenization_spaces", false);
  c.emplace_back("tokenizer_class", tokenizer_class);
  return json::dump(json::value(std::move(c)), 2) + "\n";
}

std::vector<std::pair<std::string, std::string>> gpt2_files(const gguf_tokenizer_keys& k, const std::string& where) {
  const std::vector<std::string> tokens = k.strings(key_tokens);
  const auto types = k.numbers<std::int32_t>(key_token_type, gguf_type::i32, tokens.size());
  const special_ids s = read_specials(k, tokens.size());
  json::object vocab;
  json::array added;
  json::object added_decoder;
  std::unordered_set<std::string> seen;  // one id per text: HF's vocabulary is a map
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const auto type = types.empty() ? gguf_token_type::normal : static_cast<gguf_token_type>(types[i]);
    if (type == gguf_token_type::unused && tokens[i] == "[PAD" + std::to_string(i) + "]") continue;  // padded again on reading
    if (!seen.insert(tokens[i]).second) continue;
    if (type == gguf_token_type::control || type == gguf_token_type::user_defined) {
      const bool special = type == gguf_token_type::control;
      added.push_back(added_token(i, tokens[i], special));
      json::value d = added_token(i, tokens[i], special);
      json::object o;
      for (const auto& [f, v] : d.as_object())
        if (f != "id") o.emplace_back(f, v);
      added_decoder.emplace_back(std::to_string(i), std::move(o));
    } else {
      vocab.emplace_back(tokens[i], static_cast<std::uint64_t>(i));
    }
  }
  json::array merges;
  for (const auto& m : k.strings(key_merges)) {
    const std::size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) throw error(where + ": gguf metadata '" + key_merges + "' item \"" + m + "\", expected two tokens separated by a space");
    merges.emplace_back(json::array{json::value(m.substr(0, sp)), json::value(m.substr(sp + 1))});
  }
  const std::string pre = k.string(key_pre);
  json::value post = template_processing(s, tokens);
  json::value byte_level(json::object{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}});
  json::object model{{"type", "BPE"},          {"dropout", nullptr},     {"unk_token", nullptr},
                     {"continuing_subword_prefix", nullptr},          {"end_of_word_suffix", nullptr},
                     {"fuse_unk", false},      {"byte_fallback", false}, {"ignore_merges", pre == "llama-bpe"},
                     {"vocab", std::move(vocab)}, {"merges", std::move(merges)}};
  json::object tj{{"version", "1.0"},
                  {"truncation", nullptr},
                  {"padding", nullptr},
                  {"added_tokens", std::move(added)},
                  {"normalizer", hf_normalizer(pre)},
                  {"pre_tokenizer", hf_pre_tokenizer(pre)},
                  {"post_processor", post.is_null() ? byte_level
                                                    : json::value(json::object{{"type", "Sequence"}, {"processors", json::array{byte_level, post}}})},
                  {"decoder", json::object{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
                  {"model", std::move(model)}};
  return {{"tokenizer.json", json::dump(json::value(std::move(tj)), 2) + "\n"},
          {"tokenizer_config.json", tokenizer_config(k, s, tokens, "PreTrainedTokenizerFast", std::move(added_decoder))}};
}

// HF's merges for a SentencePiece vocabulary (transformers' SentencePieceExtractor): every
// split of a piece into two pieces, ordered by the pieces' ids, then all of them by the merged
// piece's score, best first (a stable sort, so ties keep that order).
json::array sentencepiece_merges(const std::vector<std::string>& tokens, const std::vector<float>& scores) {
  std::unordered_map<std::string, std::size_t> id;
  for (std::size_t i = 0; i < tokens.size(); ++i) id.emplace(tokens[i], i);
  struct merge {
    std::size_t left, right;
    float score;
  };
  std::vector<merge> all;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    std::vector<merge> local;
    for (std::size_t cut = 1; cut < t.size(); ++cut) {
      if ((static_cast<unsigned char>(t[cut]) & 0xC0) == 0x80) continue;  // inside a UTF-8 character
      auto l = id.find(t.substr(0, cut)), r = id.find(t.substr(cut));
      if (l != id.end() && r != id.end()) local.push_back({l->second, r->second, scores[i]});
    }
    std::stable_sort(local.begin(), local.end(), [](const merge& a, const merge& b) {
      return a.left != b.left ? a.left < b.left : a.right < b.right;
    });
    all.insert(all.end(), local.begin(), local.end());
  }
  std::stable_sort(all.begin(), all.end(), [](const merge& a, const merge& b) { return a.score > b.score; });
  json::array out;
  out.reserve(all.size());
  for (const auto& m : all) out.emplace_back(json::array{json::value(tokens[m.left]), json::value(tokens[m.right])});
  return out;
}

// "llama": tokenizer.model holds every token with its score and type (the reader takes all three
// from it); tokenizer.json is the same vocabulary in HF's form for transformers (BPE with byte
// fallback, as transformers converts Llama's), whose added_tokens also let the reader find the
// special tokens by content.
std::vector<std::pair<std::string, std::string>> sentencepiece_files(const gguf_tokenizer_keys& k, const std::string&) {
  const std::vector<std::string> tokens = k.strings(key_tokens);
  auto scores = k.numbers<float>(key_scores, gguf_type::f32, tokens.size());
  auto types = k.numbers<std::int32_t>(key_token_type, gguf_type::i32, tokens.size());
  if (scores.empty()) scores.assign(tokens.size(), 0.0f);
  if (types.empty()) types.assign(tokens.size(), static_cast<std::int32_t>(gguf_token_type::normal));
  const special_ids s = read_specials(k, tokens.size());
  std::vector<sentencepiece_piece> pieces(tokens.size());
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    pieces[i].piece = tokens[i];
    pieces[i].score = scores[i];
    const std::int32_t t = types[i];
    pieces[i].type = t >= 1 && t <= 6 ? static_cast<gguf_token_type>(t) : gguf_token_type::normal;
  }
  sentencepiece_ids ids;
  auto id_or = [&](const char* typ, std::int32_t none) { auto id = s.of(typ); return id ? static_cast<std::int32_t>(*id) : none; };
  ids.unk = id_or("unk", 0);
  ids.bos = id_or("bos", -1);
  ids.eos = id_or("eos", -1);
  ids.pad = id_or("pad", -1);

  std::set<std::uint64_t> special_id_set;
  for (const auto& [_, id] : s.ids) special_id_set.insert(id);
  json::object vocab;
  json::array added;
  std::unordered_set<std::string> seen;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (!seen.insert(tokens[i]).second) continue;
    vocab.emplace_back(tokens[i], static_cast<std::uint64_t>(i));
    const auto type = pieces[i].type;
    if (type == gguf_token_type::control || type == gguf_token_type::unknown || type == gguf_token_type::user_defined ||
        special_id_set.count(i))
      added.push_back(added_token(i, tokens[i], type != gguf_token_type::user_defined));
  }
  const auto prefix = k.flag("tokenizer.ggml.add_space_prefix");
  json::array norm;
  if (prefix.value_or(true)) norm.emplace_back(json::object{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}});
  norm.emplace_back(json::object{{"type", "Replace"}, {"pattern", json::object{{"String", " "}}}, {"content", "\xE2\x96\x81"}});
  json::array dec{json::value(json::object{{"type", "Replace"}, {"pattern", json::object{{"String", "\xE2\x96\x81"}}}, {"content", " "}}),
                  json::value(json::object{{"type", "ByteFallback"}}), json::value(json::object{{"type", "Fuse"}})};
  if (prefix.value_or(true)) dec.emplace_back(json::object{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  json::object model{{"type", "BPE"},        {"dropout", nullptr},     {"unk_token", tokens[static_cast<std::size_t>(std::max(ids.unk, 0))]},
                     {"continuing_subword_prefix", nullptr},          {"end_of_word_suffix", nullptr},
                     {"fuse_unk", true},       {"byte_fallback", true},  {"ignore_merges", false},
                     {"vocab", std::move(vocab)}, {"merges", sentencepiece_merges(tokens, scores)}};
  json::object tj{{"version", "1.0"},
                  {"truncation", nullptr},
                  {"padding", nullptr},
                  {"added_tokens", std::move(added)},
                  {"normalizer", json::object{{"type", "Sequence"}, {"normalizers", std::move(norm)}}},
                  {"pre_tokenizer", nullptr},
                  {"post_processor", template_processing(s, tokens)},
                  {"decoder", json::object{{"type", "Sequence"}, {"decoders", std::move(dec)}}},
                  {"model", std::move(model)}};
  // No added_tokens_decoder in tokenizer_config.json: the reader would give those tokens score
  // -1000 and type CONTROL / USER_DEFINED over what tokenizer.model says.
  return {{"tokenizer.model", write_sentencepiece_model(pieces, ids)},
          {"tokenizer.json", json::dump(json::value(std::move(tj)), 2) + "\n"},
          {"tokenizer_config.json", tokenizer_config(k, s, tokens, "LlamaTokenizerFast", {})}};
}

}  // namespace

std::vector<std::pair<std::string, std::string>> gguf_tokenizer_files(const gguf_metadata& md, const std::string& where, std::string* skipped) {
  if (!gguf_has_tokenizer(md)) return {};
  gguf_tokenizer_keys k(md, where);
  const std::string model = k.string(key_model);
  if (!k.find(key_tokens)) throw error(where + ": gguf metadata has tokenizer.ggml.model \"" + model + "\" but no '" + key_tokens + "'");
  if (model == "gpt2") return gpt2_files(k, where);
  if (model == "llama") return sentencepiece_files(k, where);
  if (skipped)
    *skipped = where + ": tokenizer.ggml.model \"" + model + "\" is not written back as tokenizer files (moereg writes \"gpt2\" and \"llama\")";
  return {};
}

}  // namespace moereg
