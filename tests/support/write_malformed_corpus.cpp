// SPDX-License-Identifier: Apache-2.0
// moereg_malformed_corpus DIR: writes the malformed corpora (malformed_corpus.h) as files,
// DIR/gguf/*.gguf and DIR/safetensors/*.safetensors; .ci/fuzz.sh seeds the fuzzers with them.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "malformed_corpus.h"

int main(int argc, char** argv) {
  // An option is not a directory to write into (`--help` wrote ./--help/).
  if (argc != 2 || argv[1][0] == '-') {
    std::fprintf(stderr,
                 "usage: moereg_malformed_corpus DIR\n"
                 "writes the malformed GGUF and safetensors files the parser tests use into DIR/gguf and "
                 "DIR/safetensors (fuzzer seeds)\n");
    return argc == 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") ? 0 : 2;
  }
  namespace fs = std::filesystem;
  auto write = [&](const char* sub, const std::vector<moereg::test::malformed_file>& files) {
    fs::path dir = fs::path(argv[1]) / sub;
    fs::create_directories(dir);
    for (const auto& f : files) {
      std::ofstream out(dir / f.name, std::ios::binary | std::ios::trunc);
      out << f.bytes;
      if (!out) {
        std::fprintf(stderr, "%s: cannot write\n", (dir / f.name).c_str());
        return false;
      }
    }
    return true;
  };
  return write("gguf", moereg::test::malformed_gguf_corpus()) && write("safetensors", moereg::test::malformed_safetensors_corpus())
             ? 0
             : 1;
}
