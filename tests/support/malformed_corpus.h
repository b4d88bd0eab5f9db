// SPDX-License-Identifier: Apache-2.0
// malformed_corpus.h - deterministic corpora of malformed GGUF and safetensors files, each
// with the distinctive part of the message moereg must refuse it with. The ctest
// MalformedCorpus runs `moereg inspect` and `moereg convert` on every file (exit 1, that
// message, nothing written); .ci/fuzz.sh starts the fuzzers from the same files
// (moereg_malformed_corpus DIR writes them).
#pragma once

#include <string>
#include <vector>

namespace moereg::test {

struct malformed_file {
  std::string name;    // file name, ending in .gguf or .safetensors
  std::string bytes;   // the whole file
  std::string expect;  // a part of the refusal that names the problem
  std::string or_expect = {};  // another one that does, where either may come first (truncations)

  bool refusal_names_problem(const std::string& message) const {
    return message.find(expect) != std::string::npos || (!or_expect.empty() && message.find(or_expect) != std::string::npos);
  }
};

// A valid GGUF (qwen3moe metadata: string, UINT32, BOOL, STRING and FLOAT32 arrays; an F32
// and an F16 tensor), the image every malformed GGUF is derived from.
std::string valid_gguf_image();

// Truncation inside every header field; huge counts and lengths; nested arrays; unknown
// value and ggml types; bad alignments; n_dims 0 and 5; overflowing dims; misaligned,
// overlapping, gapped and out-of-file offsets; empty, duplicate and non-UTF-8 keys and
// tensor names; non-zero padding; trailing bytes; a tensor count one short (both ways it
// shows); a header that decodes past the memory budget.
std::vector<malformed_file> malformed_gguf_corpus();

// The safetensors reader's rules, one file each (the crafted cases of test_safetensors_reader).
std::vector<malformed_file> malformed_safetensors_corpus();

}  // namespace moereg::test
