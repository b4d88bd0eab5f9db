// SPDX-License-Identifier: Apache-2.0
// printable.h - text read from a file, made safe to show on a terminal or in a log.
//
// Tensor names, metadata strings, config values and manifest keys come from files that
// anyone may have written. Printed raw, an ESC sequence inside one ("\x1b]0;title\x07",
// "\x1b[31m") drives the user's terminal, a newline forges a log line, and bytes that are
// not UTF-8 garble the rest of the line. Every message that quotes such text passes it
// through quote() or printable(); the CLI passes every whole message it prints, and the
// logger every line it writes, through printable_message() as a second guard.
//
// Escapes (the same in all three, so a name looks alike everywhere):
//   \n \r \t          those controls
//   \xNN              any other C0 control, DEL, and each byte that is not part of valid UTF-8
//   \uNNNN            C1 controls (U+0080..U+009F), bidirectional overrides and isolates
//                     (U+202A..U+202E, U+2066..U+2069), line and paragraph separators
//   \\                a backslash (printable() and quote() only, so that escapes are unambiguous)
// JSON output needs none of this: json::dump escapes for JSON (see json.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moereg {

// Untrusted text with every control character, invalid byte and backslash escaped.
std::string printable(std::string_view text);

// printable(text) in single quotes: "'model.layers.0.w\x1b[31m'". For error messages, so
// text longer than quote_max_bytes is cut there: "'model.layers...'... (65535 bytes)".
inline constexpr std::size_t quote_max_bytes = 200;
std::string quote(std::string_view text);

// A whole message for the terminal or the log: as printable(), except that newlines (of
// multi-line messages) stay and backslashes are left alone, since the quoted parts inside
// were escaped already.
std::string printable_message(std::string_view message);

// Building blocks, also for json::dump. The length of the well-formed UTF-8 sequence at
// text[i] with its code point in `cp`, or 0 when the byte there does not start one.
std::size_t utf8_sequence(std::string_view text, std::size_t i, std::uint32_t& cp);
// Code points a terminal acts on instead of showing, beyond C0 and DEL: C1 controls,
// bidirectional overrides and isolates, line and paragraph separators.
bool is_control_point(std::uint32_t cp);

// Whether `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF).
bool is_valid_utf8(std::string_view text);

}  // namespace moereg
