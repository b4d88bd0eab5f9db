// SPDX-License-Identifier: Apache-2.0
// test_support.h - helpers shared by moereg's tests: temp dirs, crafted files, the CLI.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moereg::test {

// Path of a fixture file under ../shared/fixtures.
std::string fixture(const std::string& relative);

// A fresh empty directory, removed when the object dies.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_bytes(const std::string& path, const std::string& bytes);
std::string read_bytes(const std::string& path);

// A safetensors file image: 8-byte little-endian length, the header text, then data.
std::string safetensors_image(const std::string& header_json, const std::string& data);

struct command_result {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Run the built moereg binary with arguments (shell-quoted by the caller).
command_result run_moereg(const std::string& args);

// Run a shell command line (stdout and stderr captured together).
command_result run_command(const std::string& command_line);

// Leaves `out` as a crash would: converts `source` to layout `to` in shards of `shard_size`
// bytes through the application API with its fault injection, which stops the job after
// `shards` shards are complete and logged. Fails the calling test if the job ends otherwise.
void interrupted_convert(const std::string& source, const std::string& out, const std::string& to,
                         std::uint64_t shard_size, int shards);

// The files (not hidden, not directories) that differ between directories a and b, or exist in
// only one, except those named in `ignore`: empty when the two outputs are byte-identical.
std::vector<std::string> differing_files(const std::string& a, const std::string& b, const std::vector<std::string>& ignore = {});

// Whether `part` occurs in `text`: for messages, whose wording around the named file or key
// may change.
inline bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

}  // namespace moereg::test

// EXPECT_HAS(message, part): the message names `part`; prints the whole message when not.
#define EXPECT_HAS(msg, part) EXPECT_NE(std::string(msg).find(part), std::string::npos) << (msg)
#define EXPECT_LACKS(msg, part) EXPECT_EQ(std::string(msg).find(part), std::string::npos) << (msg)
