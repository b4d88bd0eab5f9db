// SPDX-License-Identifier: Apache-2.0
// Real llama.cpp (the pinned prebuilt package, scripts/fetch-llamacpp.sh) tokenizes with the
// tokenizers moereg writes into .gguf files: llama.cpp's own vocab-only GGUFs rebuilt from the
// tokenizer files moereg writes for them tokenize a text exactly as the originals, and a
// moereg-written .gguf of a fixture with a tokenizer.json tokenizes with that tokenizer
// (tests/llamacpp/llamacpp_run.cpp does the runs, in a child process).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "moereg/gguf/gguf_file.h"
#include "moereg/gguf/gguf_tokenizer.h"
#include "moereg/gguf/gguf_writer.h"

#include "llamacpp_support.h"
#include "test_support.h"
#include "tokenizer_support.h"

namespace fs = std::filesystem;

namespace moereg::test {
// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_llamacpp_tokenizer {
namespace {


// Spaces, newlines and tabs, digits, punctuation, several scripts, an emoji, and special tokens
// of the BPE (Qwen, Llama 3, DeepSeek) and SentencePiece (Llama 2) kinds.
const char* test_text =
    "Hello world!\n\tI've got 3.14159 apples,  and 12345 pears...\n\n"
    "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xE4\xBD\xA0\xE5\xA5\xBD "
    "\xF0\x9F\xA6\x99 caf\xC3\xA9   end<|endoftext|><s> </s><|begin_of_text|>"
    "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>x";

// llamacpp_run's output (stdout only: llama.cpp logs which CPU backend it loaded on stderr).
command_result tokenize(const std::string& gguf, const std::string& text_file) {
  const std::string err = text_file + ".stderr";
  command_result r = run_command("(" + quoted(llamacpp_run) + " tokenize " + quoted(llamacpp_lib) + " " + quoted(gguf) + " " +
                                 quoted(text_file) + " 2>" + quoted(err) + ")");
  if (r.exit_code != 0) r.output += read_bytes(err);
  return r;
}

TEST(LlamaCpp, TokenizesTheSameFromItsVocabsRebuiltThroughTokenizerFiles) {
  SKIP_WITHOUT_LLAMACPP();
  temp_dir d;
  write_bytes(d / "text.txt", test_text);
  int compared = 0;
  for (const auto& path : llamacpp_vocab_files()) {
    gguf_file f(path);
    const std::string model = f.get_string("tokenizer.ggml.model").value_or("");
    // Not written back (bert, t5, gemma4), or a BPE without a pre name (GgufTokenizer.*).
    if ((model != "gpt2" && model != "llama") || !f.find("tokenizer.ggml.pre")) continue;
    const std::string name = fs::path(path).stem().string();
    // The vocab file -> tokenizer files -> tokenizer.* keys -> a vocab-only .gguf with the
    // original's other keys (architecture and sizes).
    const std::string dir = d / name;
    fs::create_directories(dir);
    for (const auto& [file, bytes] : gguf_tokenizer_files(f.metadata(), path)) write_bytes(dir + "/" + file, bytes);
    gguf_tokenizer_options o;
    o.pre = f.get_string("tokenizer.ggml.pre").value_or("");
    o.vocab_size = f.find("tokenizer.ggml.tokens")->array_size();
    gguf_metadata md;
    for (const auto& kv : f.metadata())
      if (kv.first.rfind("tokenizer.", 0) != 0) md.push_back(kv);
    for (auto& kv : gguf_tokenizer_from_dir(dir, o).keys) md.push_back(std::move(kv));
    gguf_writer w(dir + "/vocab.gguf", md, {});
    w.commit();

    command_result want = tokenize(path, d / "text.txt");
    command_result got = tokenize(dir + "/vocab.gguf", d / "text.txt");
    ASSERT_EQ(want.exit_code, 0) << name << ": " << want.output;
    ASSERT_EQ(got.exit_code, 0) << name << ": " << got.output;
    EXPECT_EQ(got.output, want.output) << name;
    ++compared;
    // For bench/gguf/hf_tokenizer_check.py (transformers on the GPU host): the files and
    // llama.cpp's tokens, kept where MOEREG_TOKENIZER_DUMP says.
    if (const char* dump = std::getenv("MOEREG_TOKENIZER_DUMP"); dump && *dump) {
      const fs::path out = fs::path(dump) / name;
      fs::create_directories(out);
      for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename() != "vocab.gguf") fs::copy_file(e.path(), out / e.path().filename(), fs::copy_options::overwrite_existing);
      write_bytes((out / "llamacpp_tokens.txt").string(), want.output);
      write_bytes((fs::path(dump) / "text.txt").string(), test_text);
    }
  }
  EXPECT_GE(compared, 12);
}

TEST(LlamaCpp, MoeregGgufOfAFixtureWithTokenizerJsonTokenizesWithItAndMatchesTransformersLogits) {
  SKIP_WITHOUT_LLAMACPP();
  temp_dir d;
  fs::create_directories(d / "hf");
  for (std::string f : {"config.json", "model.safetensors"}) fs::copy_file(fixture("qwen3_moe/hf/" + f), d / ("hf/" + f));
  write_small_bpe_tokenizer(d / "hf");
  command_result r = run_moereg("convert " + quoted(d / "hf") + " " + quoted(d / "g") + " --to gguf");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The ids worked out by hand from the merges (tokenizer_support.h): qwen2's pre-tokenizer
  // splits "Hello", " the", " world", "\n", and the special token is parsed whole.
  write_bytes(d / "text.txt", "Hello the world\n<|im_start|>");
  r = tokenize(d / "g/model.gguf", d / "text.txt");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "vocabulary 128, 5 tokens\n108 98 104 95 110\nHello the world\n<|im_start|>\n");
  // The weights are the fixture's: llama.cpp still gives transformers' logits.
  r = run_command(quoted(llamacpp_run) + " logits " + quoted(llamacpp_lib) + " " + quoted(d / "g/model.gguf") + " " +
                  quoted(fixture("qwen3_moe/logits.safetensors")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace test_llamacpp_tokenizer
}  // namespace moereg::test
