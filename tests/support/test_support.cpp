// SPDX-License-Identifier: Apache-2.0
#include "test_support.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <set>
#include <stdexcept>

#include "moereg/app/convert.h"

namespace moereg::test {

void interrupted_convert(const std::string& source, const std::string& out, const std::string& to,
                         std::uint64_t shard_size, int shards) {
  app::convert_request req;
  req.source = source;
  req.output = out;
  req.to = to;
  req.shard_size = shard_size;
  req.fault.abandon_after_shards = shards;
  auto r = app::convert(req);
  ASSERT_FALSE(r.ok()) << "the job was to stop after " << shards << " shards";
  ASSERT_EQ(r.error().kind, app::error_kind::cancelled) << r.error().message;
  ASSERT_NE(r.error().message.find("stopped by fault injection after " + std::to_string(shards) + " shards"), std::string::npos)
      << r.error().message;
}


std::string fixture(const std::string& relative) { return std::string(MOEREG_FIXTURES_DIR) + "/" + relative; }

temp_dir::temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "moereg-test-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

temp_dir::~temp_dir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string safetensors_image(const std::string& header_json, const std::string& data) {
  std::string out(8, '\0');
  std::uint64_t n = header_json.size();
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header_json + data;
}

std::vector<std::string> differing_files(const std::string& a, const std::string& b, const std::vector<std::string>& ignore) {
  std::set<std::string> names;
  for (const std::string& dir : {a, b})
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      const std::string n = e.path().filename().string();
      if (e.is_regular_file() && n[0] != '.' && std::find(ignore.begin(), ignore.end(), n) == ignore.end()) names.insert(n);
    }
  std::vector<std::string> differ;
  for (const auto& n : names) {
    const std::string pa = a + "/" + n, pb = b + "/" + n;
    if (!std::filesystem::exists(pa) || !std::filesystem::exists(pb) || read_bytes(pa) != read_bytes(pb)) differ.push_back(n);
  }
  return differ;
}

command_result run_moereg(const std::string& args) {
  return run_command(std::string(MOEREG_BUILD_DIR) + "/bin/moereg " + args);
}

command_result run_command(const std::string& command_line) {
  std::string cmd = command_line + " 2>&1";
  command_result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace moereg::test
