// SPDX-License-Identifier: Apache-2.0
// The special tokens of a tokenizer as llama.cpp's converter finds them (gguf-py vocab.py
// SpecialVocab): ids by content from tokenizer_config.json looked up in tokenizer.json's
// added_tokens, then config.json's *_token_id; add_bos/eos/sep from the post-processor and
// tokenizer_config.json; the chat template(s).
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gguf_tokenizer_parts.h"
#include "le_bytes.h"
#include "moereg/base/error.h"
#include "moereg/base/regular_file.h"

namespace fs = std::filesystem;

namespace moereg::tokenizer_detail {

const std::vector<special_kind>& special_kinds() {
  static const std::vector<special_kind> kinds = {
      {"bos", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.add_bos_token"},
      {"eos", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_eos_token"},
      {"unk", "tokenizer.ggml.unknown_token_id", nullptr},
      {"sep", "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.add_sep_token"},  // llama.cpp's spelling
      {"pad", "tokenizer.ggml.padding_token_id", nullptr},
      {"cls", nullptr, nullptr},
      {"mask", "tokenizer.ggml.mask_token_id", nullptr},
      {"eot", "tokenizer.ggml.eot_token_id", nullptr},
      {"eom", "tokenizer.ggml.eom_token_id", nullptr},
  };
  return kinds;
}

gguf_value string_array(const std::vector<std::string>& items) {
  std::string enc;
  std::size_t bytes = 0;
  for (const auto& s : items) bytes += 8 + s.size();
  enc.reserve(bytes);
  for (const auto& s : items) {
    gguf_bytes::append<std::uint64_t>(enc, s.size());
    enc += s;
  }
  return gguf_value::encoded_array(gguf_type::string, items.size(), std::move(enc));
}

gguf_value i32_array(const std::vector<std::int32_t>& items) {
  std::string enc;
  enc.reserve(items.size() * 4);
  for (auto v : items) gguf_bytes::append(enc, v);
  return gguf_value::encoded_array(gguf_type::i32, items.size(), std::move(enc));
}

gguf_value f32_array(const std::vector<float>& items) {
  std::string enc;
  enc.reserve(items.size() * 4);
  for (auto v : items) gguf_bytes::append(enc, v);
  return gguf_value::encoded_array(gguf_type::f32, items.size(), std::move(enc));
}

bool looks_special(std::string_view t) {
  auto starts = [&](std::string_view p) { return t.substr(0, p.size()) == p; };
  auto ends = [&](std::string_view p) { return t.size() >= p.size() && t.substr(t.size() - p.size()) == p; };
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (starts("<|") && ends("|>")) return true;
  if (starts("<\xEF\xBD\x9C") && ends("\xEF\xBD\x9C>")) return true;  // <｜...｜> (deepseek)
  return starts("<unused") && ends(">");
}

std::optional<json::value> read_json_file(const std::string& path) {
  if (!fs::is_regular_file(path)) return std::nullopt;
  return json::parse_file(path);
}

namespace {

// A tokenizer_config.json entry such as bos_token: a string, or {"content": ...}. Python's
// truthiness decides in SpecialVocab, so an empty string counts as absent.
std::optional<std::string> token_text(const json::value* v) {
  if (!v) return std::nullopt;
  if (v->is_string()) return v->as_string().empty() ? std::nullopt : std::optional<std::string>(v->as_string());
  if (v->is_object())
    if (const json::value* c = v->find("content"); c && c->is_string() && !c->as_string().empty()) return c->as_string();
  return std::nullopt;
}

std::string read_text(const fs::path& p) { return read_regular_file(p.string()); }

const json::value* special_token_id(const json::value& entry) {
  const json::value* st = entry.find("SpecialToken");
  return st ? st->find("id") : nullptr;
}

class special_vocab {
 public:
  special_vocab(const std::string& dir, const json::value* tokenizer_json, const json::value* tokenizer_config,
                std::optional<std::uint64_t> n_vocab)
      : dir_(dir), n_vocab_(n_vocab) {
    types_ = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
    // A copy of the top level (json values share their members): the post-processor fills in
    // missing tokens, as gguf-py does in its dict.
    if (tokenizer_config && tokenizer_config->is_object() && !tokenizer_config->as_object().empty())
      tc_ = json::value(json::object(tokenizer_config->as_object()));
    if (tokenizer_json)
      if (const json::value* a = tokenizer_json->find("added_tokens"); a && a->is_array()) added_ = &a->as_array();
    if (tokenizer_json) post_processor(*tokenizer_json);
    if (tc_) from_tokenizer_config();
  }

  void from_config(const json::value* config) {
    if (!config || !config->is_object()) return;
    for (const auto& typ : types_) {
      const json::value* v = config->find(typ + "_token_id");
      if (!v || v->is_null())
        if (const json::value* tc = config->find("text_config")) v = tc->find(typ + "_token_id");
      if (v && v->is_integer()) set_id(typ, v->as_int(), "config.json");
    }
  }

  void append_to(gguf_metadata& out) const {
    for (const auto& [typ, id] : ids_)
      for (const auto& k : special_kinds())
        if (typ == k.name && k.id_key) out.emplace_back(k.id_key, gguf_value::u32(static_cast<std::uint32_t>(id)));
    for (const auto& [typ, on] : add_)
      for (const auto& k : special_kinds())
        if (typ == k.name && k.add_key) out.emplace_back(k.add_key, gguf_value::boolean(on));
    if (!chat_template_ || chat_template_->is_null()) return;
    if (chat_template_->is_string()) {
      out.emplace_back(key_chat_template, gguf_value::string(chat_template_->as_string()));
      return;
    }
    // A list of {name, template}: "default" is tokenizer.chat_template, the others
    // tokenizer.chat_template.<name> (name reduced to [A-Za-z0-9_]) listed in tokenizer.chat_templates.
    std::optional<std::string> fallback;
    std::vector<std::string> names;
    for (const auto& c : chat_template_->as_array()) {
      const json::value* n = c.is_object() ? c.find("name") : nullptr;
      const json::value* t = c.is_object() ? c.find("template") : nullptr;
      if (!n || !n->is_string() || n->as_string().empty() || !t || !t->is_string()) continue;
      std::string name = n->as_string();
      for (auto& ch : name)
        if (!std::isalnum(static_cast<unsigned char>(ch)) || static_cast<unsigned char>(ch) >= 0x80) ch = '_';
      if (name == "default") {
        fallback = t->as_string();
      } else if (std::find(names.begin(), names.end(), name) == names.end()) {
        names.push_back(name);
        out.emplace_back(std::string(key_chat_template) + "." + name, gguf_value::string(t->as_string()));
      }
    }
    if (!names.empty()) out.emplace_back(key_chat_templates, string_array(names));
    if (fallback) out.emplace_back(key_chat_template, gguf_value::string(*fallback));
  }

 private:
  std::optional<std::string> tc_text(const std::string& field) const {
    return tc_ ? token_text(tc_->find(field)) : std::nullopt;
  }
  void tc_set(const std::string& field, const std::string& v) {
    if (tc_) tc_->set(field, json::value(v));
  }

  void set_add(const std::string& typ, bool on) {
    for (auto& [t, v] : add_)
      if (t == typ) {
        v = on;
        return;
      }
    add_.emplace_back(typ, on);
  }

  void set_id(const std::string& typ, std::int64_t id, const std::string& from) {
    if (id < 0) throw error(from + ": " + typ + " token id " + std::to_string(id) + ", expected 0 or more");
    if (n_vocab_ && static_cast<std::uint64_t>(id) >= *n_vocab_) return;  // gguf-py: out of range, skipped
    for (const auto& [t, _] : ids_)
      if (t == typ) return;  // the first source wins
    ids_.emplace_back(typ, id);
  }

  // The post-processor's TemplateProcessing / RobertaProcessing: which special tokens the
  // tokenizer adds around a sequence (gguf-py's "crude parsing", followed step by step).
  void post_processor(const json::value& tj) {
    const json::value* pp = tj.find("post_processor");
    if (!pp || !pp->is_object()) return;
    std::vector<const json::value*> procs;
    if (const json::value* list = pp->find("processors"); list && list->is_array())
      for (const auto& p : list->as_array()) procs.push_back(&p);
    else procs.push_back(pp);
    auto bos = tc_text("bos_token"), cls = tc_text("cls_token"), eos = tc_text("eos_token"), sep = tc_text("sep_token");
    if (!bos && cls && tc_) tc_set("bos_token", *(bos = cls));
    if (!eos && sep && tc_) tc_set("eos_token", *(eos = sep));
    for (const json::value* p : procs) {
      const json::value* type = p->find("type");
      if (!type || !type->is_string()) continue;
      if (type->as_string() == "RobertaProcessing") {
        set_add("bos", true), set_add("eos", true), set_add("sep", true);
        auto first = [&](const char* field, const std::optional<std::string>& dflt) -> std::optional<std::string> {
          const json::value* v = p->find(field);
          if (v && v->is_array() && !v->as_array().empty() && v->as_array()[0].is_string()) return v->as_array()[0].as_string();
          return dflt;
        };
        if (!cls && tc_ && (cls = first("cls", bos))) tc_set("cls_token", *cls);
        if (!sep && tc_ && (sep = first("sep", eos))) tc_set("sep_token", *sep);
        continue;
      }
      if (type->as_string() != "TemplateProcessing") continue;
      const json::value* single = p->find("single");
      const json::value* pair = p->find("pair");
      std::optional<std::string> first, last;
      if (single && single->is_array() && single->as_array().size() > 1) {
        const json::array& s = single->as_array();
        if (const json::value* id = special_token_id(s.front()); id && id->is_string() && !id->as_string().empty()) {
          first = id->as_string();
          if (!tc_) bos = first;
          else if (first != bos && first != cls) {
            if (!bos) tc_set("bos_token", *(bos = first));
            if (!cls) tc_set("cls_token", *(cls = first));
          }
          set_add("bos", first == bos || first == cls);
        }
        if (const json::value* id = special_token_id(s.back()); id && id->is_string() && !id->as_string().empty()) {
          last = id->as_string();
          if (!tc_) eos = last;
          else if (last != eos) {
            // The old eos becomes eot (or eom): the template ends with another token.
            if (std::find(types_.begin(), types_.end(), "eot") == types_.end()) {
              types_.push_back("eot");
              if (eos) tc_set("eot_token", *eos);
            } else if (std::find(types_.begin(), types_.end(), "eom") == types_.end()) {
              types_.push_back("eom");
              if (eos) tc_set("eom_token", *eos);
            }
            tc_set("eos_token", *(eos = last));
          }
          set_add("eos", last == eos);
        }
      }
      if (pair && pair->is_array()) pair_separator(pair->as_array(), first, last, sep, eos);
    }
  }

  // TemplateProcessing<pair> "A [sep] [eos] B": whether a separator is added between the two.
  void pair_separator(const json::array& pair, const std::optional<std::string>& first, const std::optional<std::string>& last,
                      std::optional<std::string>& sep, const std::optional<std::string>& eos) {
    if (pair.empty()) return;
    auto id_of = [](const json::value& e) -> std::optional<std::string> {
      const json::value* id = special_token_id(e);
      return id && id->is_string() && !id->as_string().empty() ? std::optional<std::string>(id->as_string()) : std::nullopt;
    };
    std::size_t begin = first && id_of(pair.front()) == first ? 1 : 0;
    std::size_t end = last && id_of(pair.back()) == last ? pair.size() - 1 : pair.size();
    if (begin >= end) return;
    auto seq_id = [](const json::value& e) -> std::string {
      const json::value* s = e.find("Sequence");
      const json::value* id = s ? s->find("id") : nullptr;
      return id && id->is_string() ? id->as_string() : "";
    };
    if (seq_id(pair[begin]) != "A" || seq_id(pair[end - 1]) != "B" || end - begin <= 2) return;
    bool add_sep = false;
    auto is_sep = [&](const std::optional<std::string>& id) { return id && (id == sep || id == eos); };
    if (auto id = id_of(pair[begin + 1]); id && is_sep(id) && !last) add_sep = true;
    if (end - begin - 2 == 2)
      if (auto id = id_of(pair[begin + 2]); is_sep(id)) add_sep = true;
    set_add("sep", add_sep);
    if (add_sep && !sep && tc_ && eos) tc_set("sep_token", *(sep = eos));
  }

  void from_tokenizer_config() {
    // The chat template: tokenizer_config.json's, else chat_template.jinja (with
    // additional_chat_templates/*.jinja as a named list), else chat_template.json's.
    if (const json::value* t = tc_->find("chat_template")) {
      chat_template_ = *t;
    } else if (fs::path j = fs::path(dir_) / "chat_template.jinja"; fs::is_regular_file(j)) {
      std::vector<fs::path> extra;
      if (fs::path add = fs::path(dir_) / "additional_chat_templates"; fs::is_directory(add))
        for (const auto& e : fs::directory_iterator(add))
          if (e.path().extension() == ".jinja") extra.push_back(e.path());
      if (extra.empty()) {
        chat_template_ = json::value(read_text(j));
      } else {
        std::sort(extra.begin(), extra.end());
        json::array list{json::value(json::object{{"name", "default"}, {"template", read_text(j)}})};
        for (const auto& e : extra) list.emplace_back(json::object{{"name", e.stem().string()}, {"template", read_text(e)}});
        chat_template_ = json::value(std::move(list));
      }
    } else if (auto cj = read_json_file((fs::path(dir_) / "chat_template.json").string())) {
      if (const json::value* ct = cj->find("chat_template")) chat_template_ = *ct;
    }
    if (chat_template_ && !chat_template_->is_string() && !chat_template_->is_array()) chat_template_.reset();  // gguf-py: ignored
    for (const auto& typ : types_) {
      if (const json::value* a = tc_->find("add_" + typ + "_token"); a && a->is_bool()) set_add(typ, a->as_bool());
      auto text = token_text(tc_->find(typ + "_token"));
      if (!text || !added_) continue;
      for (const auto& t : *added_) {  // the first added token with that content
        const json::value* c = t.find("content");
        if (!c || !c->is_string() || c->as_string() != *text) continue;
        if (const json::value* id = t.find("id"); id && id->is_integer()) set_id(typ, id->as_int(), "tokenizer.json added_tokens");
        break;
      }
    }
  }

  std::string dir_;
  std::optional<std::uint64_t> n_vocab_;
  std::vector<std::string> types_;
  std::optional<json::value> tc_;
  const json::array* added_ = nullptr;
  std::vector<std::pair<std::string, std::int64_t>> ids_;
  std::vector<std::pair<std::string, bool>> add_;
  std::optional<json::value> chat_template_;
};

}  // namespace

void append_special_vocab(gguf_metadata& out, const std::string& dir, const json::value* tokenizer_json,
                          const json::value* tokenizer_config, const json::value* config, std::optional<std::uint64_t> n_vocab) {
  special_vocab sv(dir, tokenizer_json, tokenizer_config, n_vocab);
  sv.from_config(config);
  sv.append_to(out);
}

}  // namespace moereg::tokenizer_detail
