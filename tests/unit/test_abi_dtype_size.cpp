// SPDX-License-Identifier: Apache-2.0
// moereg_dtype_size (the ABI header's, for plugins and backends built apart) agrees with the
// host's dtype table for every type the host knows: a type appended to one and not the other
// fails here.
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "moereg/abi/moereg_abi.h"
#include "moereg/tensor/dtype.h"

using namespace moereg;

TEST(AbiDtypeSize, AgreesWithTheHostForEveryKnownType) {
  const std::string names(known_dtype_names());
  int seen = 0;
  for (std::size_t start = 0; start < names.size();) {
    std::size_t end = names.find(',', start);
    if (end == std::string::npos) end = names.size();
    std::string name = names.substr(start, end - start);
    while (!name.empty() && name.front() == ' ') name.erase(0, 1);
    start = end + 1;
    const auto t = parse_dtype(name);
    ASSERT_TRUE(t.has_value()) << name;
    EXPECT_EQ(moereg_dtype_size(static_cast<int32_t>(*t)), dtype_size(*t)) << name;
    ++seen;
  }
  EXPECT_GE(seen, 16);
  EXPECT_EQ(moereg_dtype_size(-1), 0u);
  EXPECT_EQ(moereg_dtype_size(1000), 0u);
}
