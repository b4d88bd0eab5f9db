// SPDX-License-Identifier: Apache-2.0
// Untrusted text made printable, the one formatting of sizes, durations and rates, the strict
// number parsers, and the progress line's words.
#include <gtest/gtest.h>

#include "moereg/base/json.h"
#include "moereg/base/printable.h"
#include "moereg/base/units.h"
#include "moereg/exec/progress_text.h"

using namespace moereg;

TEST(Printable, EscapesTerminalControls) {
  // OSC (set the window title) and SGR (red) sequences, as a crafted tensor name holds them.
  std::string name = "model.\x1b]0;pwned\x07layers.\x1b[31mred";
  EXPECT_EQ(printable(name), "model.\\x1b]0;pwned\\x07layers.\\x1b[31mred");
  EXPECT_EQ(quote(name), "'model.\\x1b]0;pwned\\x07layers.\\x1b[31mred'");
  EXPECT_EQ(printable("a\nb\tc\rd\x7f"), "a\\nb\\tc\\rd\\x7f");
  EXPECT_EQ(printable("back\\slash"), "back\\\\slash");
  // C1 CSI (U+009B) and a right-to-left override (U+202E) are escaped; other UTF-8 is kept.
  EXPECT_EQ(printable("x\xc2\x9b" "31m \xe2\x80\xae" "cba \xc3\xa9t\xc3\xa9 \xe4\xb8\xad"), "x\\u009b31m \\u202ecba \xc3\xa9t\xc3\xa9 \xe4\xb8\xad");
  // Bytes that are not UTF-8: a lone continuation, a truncated sequence, an overlong '/'.
  EXPECT_EQ(printable("a\x80z\xe4\xb8"), "a\\x80z\\xe4\\xb8");
  EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));  // a UTF-16 surrogate
  EXPECT_TRUE(is_valid_utf8("\xf0\x9f\x98\x80"));
}

TEST(Printable, WholeMessagesKeepNewlinesAndBackslashes) {
  std::string msg = "f.safetensors: 2 problems:\n  " + quote("w\x1b[2J") + "\n  tab\there";
  EXPECT_EQ(printable_message(msg), "f.safetensors: 2 problems:\n  'w\\x1b[2J'\n  tab\\there");
  EXPECT_EQ(printable_message("raw \x1b[31m"), "raw \\x1b[31m");
}

TEST(Printable, QuoteCutsLongText) {
  std::string longname(70000, 'a');
  std::string q = quote(longname);
  EXPECT_LT(q.size(), 260u);
  EXPECT_NE(q.find("(70000 bytes)"), std::string::npos) << q;
  // The cut never splits a UTF-8 sequence into escapes.
  std::string wide;
  for (int i = 0; i < 100; ++i) wide += "\xe4\xb8\xad";  // 3 bytes each: byte 200 is inside one
  EXPECT_EQ(quote(wide).find("\\x"), std::string::npos) << quote(wide);
}

TEST(Printable, JsonIsValidWhateverTheBytes) {
  std::string out;
  json::append_quoted(out, "a\x1b[31m\xc2\x9b\x7f\xff\"");
  EXPECT_EQ(out, "\"a\\u001b[31m\\u009b\\u007f\\ufffd\\\"\"");
  EXPECT_EQ(json::parse(out, "test").as_string(), "a\x1b[31m\xc2\x9b\x7f\xef\xbf\xbd\"");
}

TEST(Units, SizesDurationsRatesKeepThreeDigits) {
  EXPECT_EQ(format_bytes(999), "999 B");
  EXPECT_EQ(format_bytes(232192), "232 kB");
  EXPECT_EQ(format_bytes(1'200'000'000), "1.20 GB");
  EXPECT_EQ(format_bytes(57'040'000'000), "57.0 GB");
  EXPECT_EQ(format_bytes(999'700), "1.00 MB");  // rounding carries into the next unit
  EXPECT_EQ(format_duration(0.00173728), "1.74 ms");
  EXPECT_EQ(format_duration(0.0013108), "1.31 ms");
  EXPECT_EQ(format_duration(0.000012345), "12.3 us");
  EXPECT_EQ(format_duration(850e-9), "850 ns");
  EXPECT_EQ(format_duration(2.354), "2.35 s");
  EXPECT_EQ(format_duration(0.9996), "1.00 s");
  EXPECT_EQ(format_duration(65.4), "1 min 05 s");
  EXPECT_EQ(format_duration(7380), "2 h 03 min");
  EXPECT_EQ(format_duration(-1), "-");
  EXPECT_EQ(format_rate(133.653e6), "134 MB/s");
  EXPECT_EQ(format_rate(4.26e12), "4.26 TB/s");
  EXPECT_EQ(format_rate(512), "512 B/s");
}

TEST(Units, ByteSizesParseStrictly) {
  EXPECT_EQ(parse_byte_size("5GB"), 5'000'000'000ull);
  EXPECT_EQ(parse_byte_size("1gb"), 1'000'000'000ull);
  EXPECT_EQ(parse_byte_size("500 MB"), 500'000'000ull);
  EXPECT_EQ(parse_byte_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_byte_size("1.5KiB"), 1536ull);
  EXPECT_EQ(parse_byte_size("123"), 123ull);
  EXPECT_EQ(parse_byte_size("0"), 0ull);
  EXPECT_EQ(parse_byte_size("18446744073709551615"), 18446744073709551615ull);
  for (const char* bad : {"nan", "infGB", "inf", "-1GB", "+5GB", "0x10", "1e9", "5 G B", "GB", "", ".5GB", "5.GB",
                          "18446744073709551616", "20000000TB", "5GBs", " 5GB"})
    EXPECT_FALSE(parse_byte_size(bad).has_value()) << bad;
}

TEST(Units, IntegersAndNumbersParseStrictly) {
  EXPECT_EQ(parse_integer("4", 0, 10), 4);
  EXPECT_EQ(parse_integer("-4", -10, 10), -4);
  for (const char* bad : {"-4", "many", "99999999999", "4x", "", "-", "+4", " 4", "4.0", "0x4"})
    EXPECT_FALSE(parse_integer(bad, 0, 4096).has_value()) << bad;
  EXPECT_EQ(parse_number("0.5", 0, 10), 0.5);
  EXPECT_EQ(parse_number("1e-3", 0, 10), 1e-3);
  for (const char* bad : {"nan", "inf", "-inf", "1e999", "-1", "11", "0x1p3", ".5", "1.", "1e", "one"})
    EXPECT_FALSE(parse_number(bad, 0, 10).has_value()) << bad;
}

TEST(ProgressText, OneUnitAndNoEtaBeforeARateIsKnown) {
  progress_counts c{0, 69, 0, 57'040'000'000};
  std::string start = progress_text("convert", c, 0.2, false);
  EXPECT_EQ(start, "convert: 0/69 tensors, 0.00/57.04 GB");
  c.tensors = 3;
  c.bytes = 900'000'000;  // under a GB: still shown in the total's unit
  std::string mid = progress_text("convert", c, 2.0, false);
  EXPECT_EQ(mid, "convert: 3/69 tensors, 0.90/57.04 GB, 450 MB/s, ETA 2 min 05 s");
  EXPECT_EQ(mid.find("GiB"), std::string::npos);
  c.tensors = 69;
  c.bytes = c.total_bytes;
  EXPECT_EQ(progress_text("convert", c, 100.0, true), "convert: 69/69 tensors, 57.04/57.04 GB, 570 MB/s, done in 1 min 40 s");
  progress_counts small{1, 2, 100, 200};
  EXPECT_EQ(progress_text("synth", small, 1.0, false), "synth: 1/2 tensors, 100/200 B, 100 B/s, ETA 1.00 s");
}
