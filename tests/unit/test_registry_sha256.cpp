// SPDX-License-Identifier: Apache-2.0
// SHA-256 against the FIPS 180-4 / NIST test vectors, incremental updates, and files.
#include <gtest/gtest.h>

#include "moereg/base/error.h"
#include "moereg/registry/sha256.h"
#include "test_support.h"

using namespace moereg;

TEST(RegistrySha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(RegistrySha256, IncrementalEqualsOneShotAcrossBlockBoundaries) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data += static_cast<char>((i * 131 + 7) & 0xFF);
  for (std::size_t len : {0u, 1u, 55u, 56u, 63u, 64u, 65u, 119u, 120u, 128u, 1000u}) {
    std::string part = data.substr(0, len);
    for (std::size_t chunk : {1u, 3u, 63u, 64u, 100u}) {
      sha256 h;
      for (std::size_t off = 0; off < part.size(); off += chunk) h.update(part.substr(off, chunk));
      EXPECT_EQ(h.finish_hex(), sha256_hex(part)) << "len " << len << " chunk " << chunk;
    }
  }
}

TEST(RegistrySha256, FileDigestAndMissingFile) {
  test::temp_dir d;
  test::write_bytes(d / "f", "abc");
  EXPECT_EQ(sha256_file_hex(d / "f"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  try {
    sha256_file_hex(d / "missing");
    FAIL() << "expected moereg::error";
  } catch (const error& e) {
    EXPECT_EQ(std::string(e.what()), (d / "missing") + ": cannot open to compute its sha256: No such file or directory");
  }
}
