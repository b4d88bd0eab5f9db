// SPDX-License-Identifier: Apache-2.0
// SentencePiece's tokenizer.model: a protobuf ModelProto, read and written by hand (the
// few fields llama.cpp uses), and the "llama" vocabulary llama.cpp's converter makes of it
// (convert_hf_to_gguf.py _create_vocab_sentencepiece).
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gguf_tokenizer_parts.h"
#include "moereg/base/error.h"
#include "moereg/base/regular_file.h"

namespace fs = std::filesystem;

namespace moereg {

namespace {

// Protobuf wire format: a key is (field << 3 | wire type); 0 varint, 1 fixed64, 2 length-
// delimited, 5 fixed32.
class proto_reader {
 public:
  proto_reader(const char* p, std::size_t n, const std::string& where) : p_(p), end_(p + n), where_(where) {}
  bool done() const { return p_ == end_; }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) fail("a varint runs past the end");
      const auto b = static_cast<unsigned char>(*p_++);
      v |= static_cast<std::uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("a varint longer than 10 bytes");
  }
  std::string_view bytes() {
    const std::uint64_t n = varint();
    if (n > static_cast<std::uint64_t>(end_ - p_)) fail("a field of " + std::to_string(n) + " bytes runs past the end");
    std::string_view s(p_, n);
    p_ += n;
    return s;
  }
  std::uint32_t fixed32() {
    if (end_ - p_ < 4) fail("a 32-bit field runs past the end");
    std::uint32_t v;
    std::memcpy(&v, p_, 4);
    p_ += 4;
    return v;
  }
  void skip(std::uint32_t wire) {
    switch (wire) {
      case 0: varint(); return;
      case 1:
        if (end_ - p_ < 8) fail("a 64-bit field runs past the end");
        p_ += 8;
        return;
      case 2: bytes(); return;
      case 5: fixed32(); return;
      default: fail("wire type " + std::to_string(wire) + ", expected 0, 1, 2 or 5 (not a SentencePiece model)");
    }
  }
  [[noreturn]] void fail(const std::string& what) const { throw error(where_ + ": tokenizer.model (SentencePiece protobuf): " + what); }

 private:
  const char* p_;
  const char* end_;
  const std::string& where_;
};

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
void put_key(std::string& out, std::uint32_t field, std::uint32_t wire) { put_varint(out, (field << 3) | wire); }
void put_bytes(std::string& out, std::uint32_t field, std::string_view s) {
  put_key(out, field, 2);
  put_varint(out, s.size());
  out.append(s);
}
// int32 fields take negatives as 10-byte varints (two's complement, sign-extended).
void put_int32(std::string& out, std::uint32_t field, std::int32_t v) {
  put_key(out, field, 0);
  put_varint(out, static_cast<std::uint64_t>(static_cast<std::int64_t>(v)));
}

std::string read_file(const fs::path& p) {
  return read_regular_file(p.string());
}

}  // namespace

std::vector<sentencepiece_piece> read_sentencepiece_model(const std::string& bytes, const std::string& where) {
  std::vector<sentencepiece_piece> pieces;
  proto_reader r(bytes.data(), bytes.size(), where);
  while (!r.done()) {
    const std::uint64_t key = r.varint();
    if ((key >> 3) != 1 || (key & 7) != 2) {  // ModelProto.pieces = 1; the specs are not needed
      r.skip(static_cast<std::uint32_t>(key & 7));
      continue;
    }
    const std::string_view m = r.bytes();
    proto_reader pr(m.data(), m.size(), where);
    sentencepiece_piece p;
    while (!pr.done()) {
      const std::uint64_t k = pr.varint();
      const std::uint64_t field = k >> 3, wire = k & 7;
      if (field == 1 && wire == 2) {
        p.piece = std::string(pr.bytes());
      } else if (field == 2 && wire == 5) {
        const std::uint32_t bits = pr.fixed32();
        std::memcpy(&p.score, &bits, 4);
      } else if (field == 3 && wire == 0) {
        const std::uint64_t t = pr.varint();
        if (t < 1 || t > 6)
          pr.fail("piece " + std::to_string(pieces.size()) + " has type " + std::to_string(t) + ", expected 1 to 6 (NORMAL .. BYTE)");
        p.type = static_cast<gguf_token_type>(t);
      } else {
        pr.skip(static_cast<std::uint32_t>(wire));
      }
    }
    pieces.push_back(std::move(p));
  }
  if (pieces.empty()) throw error(where + ": tokenizer.model (SentencePiece protobuf) has no pieces");
  return pieces;
}

std::string write_sentencepiece_model(const std::vector<sentencepiece_piece>& pieces, const sentencepiece_ids& ids) {
  std::string out;
  bool bytes = false;
  for (const auto& p : pieces) {
    std::string m;
    put_bytes(m, 1, p.piece);
    put_key(m, 2, 5);
    std::uint32_t bits;
    std::memcpy(&bits, &p.score, 4);
    for (int i = 0; i < 4; ++i) m += static_cast<char>((bits >> (8 * i)) & 0xFF);
    if (p.type != gguf_token_type::normal) {
      put_key(m, 3, 0);
      put_varint(m, static_cast<std::uint64_t>(p.type));
    }
    bytes = bytes || p.type == gguf_token_type::byte;
    put_bytes(out, 1, m);
  }
  // TrainerSpec: model_type BPE (3 = 2), vocab_size (4), byte_fallback (35), unk/bos/eos/pad ids (40..43).
  std::string trainer;
  put_int32(trainer, 3, 2);
  put_int32(trainer, 4, static_cast<std::int32_t>(pieces.size()));
  if (bytes) put_int32(trainer, 35, 1);
  put_int32(trainer, 40, ids.unk);
  put_int32(trainer, 41, ids.bos);
  put_int32(trainer, 42, ids.eos);
  put_int32(trainer, 43, ids.pad);
  put_bytes(out, 2, trainer);
  // NormalizerSpec: name "identity" (1), add_dummy_prefix (3) on, remove_extra_whitespaces (4)
  // off, escape_whitespaces (5) on: Llama's.
  std::string norm;
  put_bytes(norm, 1, "identity");
  put_int32(norm, 3, 1);
  put_int32(norm, 4, 0);
  put_int32(norm, 5, 1);
  put_bytes(out, 3, norm);
  return out;
}

namespace tokenizer_detail {

vocab_arrays sentencepiece_vocab(const std::string& dir, const json::value* tokenizer_config, std::optional<std::uint64_t> vocab_size) {
  const fs::path path = fs::path(dir) / "tokenizer.model";
  const std::vector<sentencepiece_piece> pieces = read_sentencepiece_model(read_file(path), path.string());
  const std::uint64_t n = vocab_size.value_or(pieces.size());
  vocab_arrays v;
  v.tokens.resize(n);
  v.scores.assign(n, -10000.0f);
  v.types.assign(n, static_cast<std::int32_t>(gguf_token_type::unused));
  for (std::uint64_t i = 0; i < n; ++i) v.tokens[i] = "[PAD" + std::to_string(i) + "]";
  for (std::uint64_t i = 0; i < pieces.size() && i < n; ++i) {  // pieces past the vocabulary: dropped, as gguf-py does
    v.tokens[i] = pieces[i].piece;
    v.scores[i] = pieces[i].score;
    v.types[i] = static_cast<std::int32_t>(pieces[i].type);
  }
  auto set = [&](std::int64_t id, const std::string& text, gguf_token_type type, const std::string& from) {
    if (id < 0) throw error(from + ": token \"" + text + "\" has id " + std::to_string(id) + ", expected 0 or more");
    if (static_cast<std::uint64_t>(id) >= n) return;  // gguf-py: out of range, ignored
    v.tokens[id] = text;
    v.scores[id] = -1000.0f;
    v.types[id] = static_cast<std::int32_t>(type);
  };
  // added_tokens.json: {"text": id}, USER_DEFINED.
  const std::string added_path = (fs::path(dir) / "added_tokens.json").string();
  if (auto added = read_json_file(added_path); added && added->is_object())
    for (const auto& [text, id] : added->as_object())
      if (id.is_integer()) set(id.as_int(), text, gguf_token_type::user_defined, added_path);
  // tokenizer_config.json's added_tokens_decoder: {"id": {"content", "special"}}.
  if (tokenizer_config)
    if (const json::value* dec = tokenizer_config->find("added_tokens_decoder"); dec && dec->is_object())
      for (const auto& [key, entry] : dec->as_object()) {
        const json::value* c = entry.find("content");
        if (!c || !c->is_string()) continue;
        std::int64_t id = 0;
        try {
          id = std::stoll(key);
        } catch (const std::exception&) {
          throw error(dir + "/tokenizer_config.json: added_tokens_decoder key \"" + key + "\", expected a token id");
        }
        const json::value* sp = entry.find("special");
        std::string text = c->as_string();
        if ((sp && sp->is_bool() && sp->as_bool()) || looks_special(text)) {
          set(id, text, gguf_token_type::control, dir + "/tokenizer_config.json");
        } else {
          for (std::size_t p; (p = text.find("\xE2\x96\x81")) != std::string::npos;) text.replace(p, 3, " ");
          set(id, text, gguf_token_type::user_defined, dir + "/tokenizer_config.json");
        }
      }
  return v;
}

}  // namespace tokenizer_detail

}  // namespace moereg
