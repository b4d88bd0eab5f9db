// SPDX-License-Identifier: Apache-2.0
#include "moereg/base/units.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

namespace moereg {

namespace {

// Three significant digits for 0 <= v < 999.5 ("1.74", "13.4", "134").
std::string three_digits(double v) {
  char buf[32];
  if (v >= 99.95) std::snprintf(buf, sizeof buf, "%.0f", v);
  else if (v >= 9.995) std::snprintf(buf, sizeof buf, "%.1f", v);
  else std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// v in the largest decimal unit that keeps it under 1000 (after rounding).
std::string decimal_scaled(double v, const char* const* units, int n_units, const char* suffix) {
  int u = 0;
  while (v >= 999.5 && u + 1 < n_units) {
    v /= 1000;
    ++u;
  }
  return three_digits(v) + " " + units[u] + suffix;
}

// Exact arithmetic past 2^64 for sizes like "1.5TiB" (GCC and Clang have it on 64-bit hosts).
__extension__ typedef unsigned __int128 u128;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::string format_bytes(std::uint64_t bytes) {
  static const char* const units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  if (bytes < 1000) return std::to_string(bytes) + " B";
  return decimal_scaled(static_cast<double>(bytes), units, 7, "");
}

std::string format_rate(double bytes_per_second) {
  static const char* const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  if (!std::isfinite(bytes_per_second) || bytes_per_second < 0) return "-";
  return decimal_scaled(bytes_per_second, units, 6, "/s");
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "-";
  if (s == 0) return "0 s";
  if (s * 1e9 < 999.5) return three_digits(s * 1e9) + " ns";
  if (s * 1e6 < 999.5) return three_digits(s * 1e6) + " us";
  if (s * 1e3 < 999.5) return three_digits(s * 1e3) + " ms";
  if (s < 59.95) return three_digits(s) + " s";
  char buf[48];
  if (s < 3599.5) {
    long total = std::lround(s);
    std::snprintf(buf, sizeof buf, "%ld min %02ld s", total / 60, total % 60);
  } else {
    long minutes = std::lround(s / 60);
    std::snprintf(buf, sizeof buf, "%ld h %02ld min", minutes / 60, minutes % 60);
  }
  return buf;
}

std::optional<std::uint64_t> parse_byte_size(std::string_view t) {
  std::size_t i = 0;
  u128 whole = 0;
  const u128 cap = static_cast<u128>(1) << 100;  // far past 2^64, short of overflow
  if (i >= t.size() || !is_digit(t[i])) return std::nullopt;
  for (; i < t.size() && is_digit(t[i]); ++i) {
    whole = whole * 10 + static_cast<unsigned>(t[i] - '0');
    if (whole > cap) return std::nullopt;
  }
  u128 frac = 0, frac_scale = 1;
  if (i < t.size() && t[i] == '.') {
    ++i;
    if (i >= t.size() || !is_digit(t[i])) return std::nullopt;
    for (int kept = 0; i < t.size() && is_digit(t[i]); ++i)
      if (kept++ < 19) {  // finer digits cannot change whole bytes at these multipliers
        frac = frac * 10 + static_cast<unsigned>(t[i] - '0');
        frac_scale *= 10;
      }
  }
  while (i < t.size() && t[i] == ' ') ++i;
  std::string unit;
  for (; i < t.size(); ++i) unit += static_cast<char>(t[i] >= 'a' && t[i] <= 'z' ? t[i] - 'a' + 'A' : t[i]);
  std::uint64_t mult;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KB") mult = 1000ull;
  else if (unit == "MB") mult = 1000ull * 1000;
  else if (unit == "GB") mult = 1000ull * 1000 * 1000;
  else if (unit == "TB") mult = 1000ull * 1000 * 1000 * 1000;
  else if (unit == "KIB") mult = 1ull << 10;
  else if (unit == "MIB") mult = 1ull << 20;
  else if (unit == "GIB") mult = 1ull << 30;
  else if (unit == "TIB") mult = 1ull << 40;
  else return std::nullopt;
  u128 bytes = whole * mult + frac * mult / frac_scale;
  if (bytes > std::numeric_limits<std::uint64_t>::max()) return std::nullopt;
  return static_cast<std::uint64_t>(bytes);
}

std::optional<std::int64_t> parse_integer(std::string_view t, std::int64_t lo, std::int64_t hi) {
  std::size_t digits = !t.empty() && t[0] == '-' ? 1 : 0;
  if (digits >= t.size()) return std::nullopt;
  for (std::size_t i = digits; i < t.size(); ++i)
    if (!is_digit(t[i])) return std::nullopt;
  std::int64_t v = 0;
  auto r = std::from_chars(t.data(), t.data() + t.size(), v);
  if (r.ec != std::errc() || r.ptr != t.data() + t.size() || v < lo || v > hi) return std::nullopt;
  return v;
}

std::optional<double> parse_number(std::string_view t, double lo, double hi) {
  // -?D+(.D+)?([eE][+-]?D+)?
  std::size_t i = 0;
  auto digits = [&] {
    std::size_t start = i;
    while (i < t.size() && is_digit(t[i])) ++i;
    return i > start;
  };
  if (i < t.size() && t[i] == '-') ++i;
  if (!digits()) return std::nullopt;
  if (i < t.size() && t[i] == '.') {
    ++i;
    if (!digits()) return std::nullopt;
  }
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) ++i;
    if (!digits()) return std::nullopt;
  }
  if (i != t.size()) return std::nullopt;
  double v = 0;
  auto r = std::from_chars(t.data(), t.data() + t.size(), v);
  if (r.ec != std::errc() || r.ptr != t.data() + t.size() || !std::isfinite(v) || v < lo || v > hi) return std::nullopt;
  return v;
}

}  // namespace moereg
