// SPDX-License-Identifier: Apache-2.0
// units.h - sizes, durations and rates as people read and write them, and strict parsers
// for the numbers people pass on a command line or in a recipe.
//
// One unit system everywhere moereg prints: decimal (kB, MB, GB, TB; MB/s), as transformers
// cuts shards ("5GB") and as disks and networks are sold. Numbers keep three significant
// digits: "1.74 ms", "134 MB/s", "57.0 GB", never "0.00173728 s".
//
// The parsers accept exactly what their comment says and nothing else: no "nan", "inf",
// hex, leading '+', trailing junk, or values past the range; they return nullopt and the
// caller names the option, the file and line, and what was expected.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace moereg {

// "999 B", "232 kB", "1.20 GB", "57.0 GB".
std::string format_bytes(std::uint64_t bytes);

// "850 ns", "12.5 us", "1.74 ms", "2.35 s", "1 min 05 s", "2 h 03 min". Negative or not
// finite: "-".
std::string format_duration(double seconds);

// "512 B/s", "134 MB/s", "4.26 TB/s". Negative or not finite: "-".
std::string format_rate(double bytes_per_second);

// A byte count: digits with an optional fraction, then an optional unit, case-insensitive,
// with optional spaces between: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB
// (powers of 1024). "5GB", "500 MB", "2GiB", "1.5GB", "123". The result is rounded down to
// whole bytes; nullopt when malformed or above 2^64-1.
std::optional<std::uint64_t> parse_byte_size(std::string_view text);

// A decimal integer in [lo, hi]: an optional '-', then digits only.
std::optional<std::int64_t> parse_integer(std::string_view text, std::int64_t lo, std::int64_t hi);

// A finite decimal number in [lo, hi]: digits, an optional fraction and exponent, an
// optional '-' ("0.5", "1e-3"); no "nan", "inf" or hex.
std::optional<double> parse_number(std::string_view text, double lo, double hi);

}  // namespace moereg
