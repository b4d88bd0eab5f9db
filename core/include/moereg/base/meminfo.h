// SPDX-License-Identifier: Apache-2.0
// meminfo.h - the memory the kernel says is available (/proc/meminfo's MemAvailable), read
// where a job is about to make something large in memory. Header-only, so that the backends,
// which never link moereg_core, read it the same way the application does.
#pragma once

#include <charconv>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

namespace moereg {

// MemAvailable of a /proc/meminfo text ("MemAvailable:   12345 kB"), in bytes; nullopt where
// the text has no such line or it is not in that form.
inline std::optional<std::uint64_t> meminfo_available(std::string_view meminfo) {
  constexpr std::string_view field = "MemAvailable:";
  while (!meminfo.empty()) {
    const std::size_t eol = meminfo.find('\n');
    std::string_view line = meminfo.substr(0, eol);
    meminfo.remove_prefix(eol == std::string_view::npos ? meminfo.size() : eol + 1);
    if (line.substr(0, field.size()) != field) continue;
    line.remove_prefix(field.size());
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    std::uint64_t kib = 0;
    const char* const last = line.data() + line.size();
    const auto [end, ec] = std::from_chars(line.data(), last, kib);
    if (ec != std::errc{} || std::string_view(end, static_cast<std::size_t>(last - end)) != " kB") return std::nullopt;
    return kib * 1024;
  }
  return std::nullopt;
}

// This host's MemAvailable in bytes; nullopt where /proc/meminfo cannot be read.
inline std::optional<std::uint64_t> memory_available() {
  std::ifstream f("/proc/meminfo");
  if (!f) return std::nullopt;
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return meminfo_available(text);
}

}  // namespace moereg
