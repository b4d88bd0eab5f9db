// SPDX-License-Identifier: Apache-2.0
// sha256.h - SHA-256 (FIPS 180-4), used to check a plugin library against the digest its
// plugin.yaml pins (`library_sha256`). Self-contained so moereg needs no crypto library.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moereg {

class sha256 {
 public:
  sha256();
  void update(const void* data, std::size_t size);
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  // Finishes the digest; the object must not be updated afterwards.
  std::array<std::uint8_t, 32> finish();
  // Finishes and returns 64 lowercase hex digits.
  std::string finish_hex();

 private:
  void block(const std::uint8_t* p);
  std::array<std::uint32_t, 8> h_;
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_ = 0;
};

// Lowercase hex SHA-256 of bytes, or of a whole file (throws moereg::error naming the file).
std::string sha256_hex(std::string_view bytes);
std::string sha256_file_hex(const std::string& path);

}  // namespace moereg
