// SPDX-License-Identifier: Apache-2.0
// option_values.h - numeric option values checked against their range, from the command
// line or from a recipe, with one message shape for every command:
//   --threads '-4': expected an integer from 0 to 4096 (0 = all cores)
//   recipe.yaml:3:1: threads 'many': expected an integer from 0 to 4096 (0 = all cores)
// A bad value on the command line is a usage error (exit 2); in a recipe it is bad input
// (exit 1). Never a default, never "internal error".
#pragma once

#include "moereg/base/parallel.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "command.h"

namespace moereg::cli {

// The most threads any command starts (--threads, recipe threads).
using moereg::max_threads;  // moereg/base/parallel.h

struct option_value {
  std::string text;
  std::string where;  // "--threads", or "recipe.yaml:3:1: threads"
  bool from_command_line = true;
};

// The option's text from the command line, as option_value{text, "--name"}.
option_value cli_value(const po::variables_map& vm, const char* name);

// Throws usage_error (command line) or error (recipe): "<where> '<text>': expected <what>".
[[noreturn]] void bad_value(const option_value& v, const std::string& expected);

// 0..max_threads; 0 = the command's default (all the CPUs it may use).
int threads_value(const option_value& v);

// A byte size: "5GB", "500MB", "2GiB", "123" (moereg/base/units.h parse_byte_size).
std::uint64_t size_value(const option_value& v);

// --experts A:B, the experts A..B-1 of every layer: integers with 0 <= A < B.
std::pair<std::int64_t, std::int64_t> experts_value(const option_value& v);

// An integer in [lo, hi]; `expected` says what it is for ("a decoder layer").
std::int64_t integer_value(const option_value& v, std::int64_t lo, std::int64_t hi, const std::string& meaning);

// An unsigned 64-bit integer (seeds).
std::uint64_t uint64_value(const option_value& v);

// A finite number in [lo, hi] (seconds).
double number_value(const option_value& v, double lo, double hi, const std::string& meaning);

// "1,16,128": token counts from 1 to max_bench_tokens (moe bench --tokens).
inline constexpr std::int64_t max_bench_tokens = 1 << 20;
std::vector<std::int64_t> tokens_value(const option_value& v);

// Every `--backend-option key=value`, in the order given (a later key overrides an earlier
// one); usage_error for a text without '=' or with an empty key.
std::vector<std::pair<std::string, std::string>> backend_option_values(const po::variables_map& vm);

}  // namespace moereg::cli
