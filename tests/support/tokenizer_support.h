// SPDX-License-Identifier: Apache-2.0
// tokenizer_support.h - tokenizers for the GGUF tokenizer tests: llama.cpp's vocab-only GGUFs
// (scripts/fetch-llamacpp.sh), a small hand-made byte-level BPE, and key-by-key comparison.
#pragma once

#include <string>
#include <vector>

#include "moereg/gguf/gguf_file.h"

namespace moereg::test {

// llama.cpp's vocab-only GGUFs of the pinned package (third_party/llamacpp/vocab/*.gguf), sorted;
// empty when the package is absent.
std::vector<std::string> llamacpp_vocab_files();

// The tokenizer.* entries of a metadata list.
gguf_metadata tokenizer_keys(const gguf_metadata& md);

// How two tokenizer key sets differ, one line per key: missing, extra, another type, another
// value (for arrays, the first differing item). Empty when they are equal key by key.
std::vector<std::string> key_differences(const gguf_metadata& want, const gguf_metadata& got);

// Writes a 128-token byte-level BPE tokenizer into dir (tokenizer.json, tokenizer_config.json):
// ids 0..93 the printable ASCII bytes '!'..'~', 94 'Ġ' (space), 95 'Ċ' (newline), 96..108 made
// by the 13 merges below, 109 <|endoftext|>, 110 <|im_start|>, 111 <|im_end|> (special), 112
// <tool> (added, not special); 113..127 unused. eos <|im_end|>, pad <|endoftext|>, no bos.
//   "Ġ t" "h e" "Ġt he" "i n" "Ġ w" "o r" "Ġw or" "l d" "Ġwor ld" "H e" "l l" "He ll" "Hell o"
// "Hello the world\n<|im_start|>" is then 108 98 104 95 110.
void write_small_bpe_tokenizer(const std::string& dir);

}  // namespace moereg::test
