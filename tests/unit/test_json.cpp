// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "moereg/base/error.h"
#include "moereg/base/json.h"

using namespace moereg;

TEST(Json, ParsesNestedDocumentKeepingOrder) {
  auto v = json::parse(R"({"b":1,"a":{"x":[1,2.5,"s",true,null]}})", "t");
  ASSERT_TRUE(v.is_object());
  EXPECT_EQ(v.as_object()[0].first, "b");
  EXPECT_EQ(v.find("b")->as_int(), 1);
  const auto* x = v.find_path("a.x");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->as_array().size(), 5u);
  EXPECT_DOUBLE_EQ(x->as_array()[1].as_double(), 2.5);
  EXPECT_TRUE(x->as_array()[4].is_null());
}

TEST(Json, RejectsDuplicateKeysNamingThem) {
  try {
    json::parse(R"({"k":1,"k":2})", "file.json");
    FAIL() << "expected an error";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("duplicate key \"k\""), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("file.json"), std::string::npos);
  }
}

// A config.json saved with a byte order mark was "unexpected character '\xef' at byte 0".
TEST(Json, ByteOrderMarkIsNamed) {
  try {
    json::parse("\xEF\xBB\xBF{\"a\": 1}", "config.json");
    FAIL() << "expected an error";
  } catch (const error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json: invalid JSON: it starts with a UTF-8 byte order mark (EF BB BF)"), std::string::npos)
        << e.what();
  }
}

TEST(Json, RejectsInvalidUtf8AndDeepNesting) {
  EXPECT_THROW(json::parse(std::string("{\"a\":\"\xff\"}"), "t"), error);
  EXPECT_THROW(json::parse(std::string("{\"a\":\"\xc0\x80\"}"), "t"), error);  // overlong
  EXPECT_THROW(json::parse(std::string(200, '[') + std::string(200, ']'), "t"), error);
  EXPECT_THROW(json::parse("{\"a\":1,}", "t"), error);
  EXPECT_THROW(json::parse("{\"a\":01}", "t"), error);
}

TEST(Json, DumpRoundTrips) {
  std::string text = R"({"a":[1,2],"b":"q\"\n","c":1.5,"d":false})";
  EXPECT_EQ(json::dump(json::parse(text, "t")), text);
}
