// SPDX-License-Identifier: Apache-2.0
#include "option_values.h"

#include <limits>
#include <sstream>

#include "moereg/base/error.h"
#include "moereg/base/printable.h"
#include "moereg/base/units.h"

namespace moereg::cli {

option_value cli_value(const po::variables_map& vm, const char* name) {
  return {vm[name].as<std::string>(), std::string("--") + name, true};
}

void bad_value(const option_value& v, const std::string& expected) {
  std::string msg = v.where + " " + quote(v.text) + ": expected " + expected;
  if (v.from_command_line) throw usage_error(msg);
  throw error(msg);
}

int threads_value(const option_value& v) {
  auto n = parse_integer(v.text, 0, max_threads);
  if (!n) bad_value(v, "an integer from 0 to " + std::to_string(max_threads) + " (0 = all cores)");
  return static_cast<int>(*n);
}

std::uint64_t size_value(const option_value& v) {
  auto n = parse_byte_size(v.text);
  if (!n) bad_value(v, "a size like 5GB, 500MB, 2GiB or a byte count (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)");
  return *n;
}

std::pair<std::int64_t, std::int64_t> experts_value(const option_value& v) {
  const std::string expected = "A:B with integers 0 <= A < B, the experts A..B-1 of every layer";
  auto colon = v.text.find(':');
  if (colon == std::string::npos) bad_value(v, expected);
  auto a = parse_integer(std::string_view(v.text).substr(0, colon), 0, std::numeric_limits<std::int64_t>::max());
  auto b = parse_integer(std::string_view(v.text).substr(colon + 1), 0, std::numeric_limits<std::int64_t>::max());
  if (!a || !b || *a >= *b) bad_value(v, expected);
  return {*a, *b};
}

std::int64_t integer_value(const option_value& v, std::int64_t lo, std::int64_t hi, const std::string& meaning) {
  auto n = parse_integer(v.text, lo, hi);
  if (!n) bad_value(v, "an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + " (" + meaning + ")");
  return *n;
}

std::uint64_t uint64_value(const option_value& v) {
  // Digits only: no sign, so "-1" is refused instead of wrapping to 2^64-1.
  auto n = parse_byte_size(v.text);
  bool digits = !v.text.empty() && v.text.find_first_not_of("0123456789") == std::string::npos;
  if (!n || !digits) bad_value(v, "an integer from 0 to " + std::to_string(std::numeric_limits<std::uint64_t>::max()));
  return *n;
}

double number_value(const option_value& v, double lo, double hi, const std::string& meaning) {
  auto n = parse_number(v.text, lo, hi);
  if (!n) {
    auto shown = [](double x) {
      std::string s = std::to_string(x);
      s.erase(s.find_last_not_of('0') + 1);
      if (!s.empty() && s.back() == '.') s.pop_back();
      return s;
    };
    bad_value(v, "a number from " + shown(lo) + " to " + shown(hi) + " (" + meaning + ")");
  }
  return *n;
}

std::vector<std::int64_t> tokens_value(const option_value& v) {
  std::vector<std::int64_t> out;
  std::stringstream ss(v.text);
  for (std::string part; std::getline(ss, part, ',');) {
    auto n = parse_integer(part, 1, max_bench_tokens);
    if (!n)
      throw usage_error(v.where + ": expected comma-separated integers from 1 to " + std::to_string(max_bench_tokens) + ", found " +
                        quote(part));
    out.push_back(*n);
  }
  if (out.empty()) throw usage_error(v.where + ": expected at least one value");
  return out;
}

std::vector<std::pair<std::string, std::string>> backend_option_values(const po::variables_map& vm) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!vm.count("backend-option")) return out;
  for (const std::string& t : vm["backend-option"].as<std::vector<std::string>>()) {
    const std::size_t eq = t.find('=');
    if (eq == std::string::npos || eq == 0)
      throw usage_error("--backend-option '" + t + "': expected key=value (e.g. --backend-option k_block=512)");
    out.emplace_back(t.substr(0, eq), t.substr(eq + 1));
  }
  return out;
}

}  // namespace moereg::cli
