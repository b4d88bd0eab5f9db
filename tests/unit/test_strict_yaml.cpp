// SPDX-License-Identifier: Apache-2.0
// The strict YAML reader shared by plugin manifests and conversion recipes: a key given twice
// and a YAML 1.1 boolean are refused by line, not resolved silently.
#include <gtest/gtest.h>

#include <filesystem>

#include "moereg/base/error.h"
#include "moereg/base/strict_yaml.h"
#include "test_support.h"

using namespace moereg;
namespace fs = std::filesystem;

// Its own namespace: the unity build (scripts/test.sh) compiles this file with others.
namespace test_strict_yaml {
namespace {

std::string load_error(const std::string& text) {
  try {
    load_strict_yaml(text, "m.yaml");
  } catch (const error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(StrictYaml, DuplicateKeyIsRefusedNamingBothLines) {
  EXPECT_EQ(load_error("name: a\nversion: '1'\nname: b\n"),
            "m.yaml:3:1: duplicate key 'name' (first given at line 1); each key may appear once in a map");
  // Nested maps, flow maps, and maps inside lists each have their own keys.
  EXPECT_EQ(load_error("layouts:\n  hf:\n    experts: {gate: 1, up: 2, gate: 3}\n"),
            "m.yaml:3:31: duplicate key 'gate' (first given at line 3); each key may appear once in a map");
  EXPECT_EQ(load_error("renames:\n  - {from: a, to: b}\n  - from: c\n    to: d\n    to: e\n"),
            "m.yaml:5:5: duplicate key 'to' (first given at line 4); each key may appear once in a map");
  // The same key in sibling maps, values equal to keys, and aliases are fine.
  EXPECT_EQ(load_error("a: {x: 1}\nb: {x: 1}\nc: &r {x: x}\nd: *r\nx: [x, x]\n"), "");
}

TEST(StrictYaml, SyntaxErrorsAndUnreadableFilesNameThePlace) {
  EXPECT_EQ(load_error("a: [1, 2\n").rfind("m.yaml:", 0), 0u);
  test::temp_dir d;
  try {
    load_strict_yaml_file(d.path());
    FAIL() << "a directory was read as YAML";
  } catch (const error& e) {
    EXPECT_EQ(std::string(e.what()), d.path() + ": is a directory, expected a YAML file");
  }
}

TEST(StrictYaml, BooleansAreTrueOrFalseOnly) {
  YAML::Node n = load_strict_yaml("a: true\nb: false\nc: yes\nd: True\ne: 1\nf: on\n", "m.yaml");
  EXPECT_EQ(strict_bool(n["a"]), true);
  EXPECT_EQ(strict_bool(n["b"]), false);
  for (const char* k : {"c", "d", "e", "f"}) EXPECT_FALSE(strict_bool(n[k]).has_value()) << k;
  // Quoted, true is a string.
  YAML::Node q = load_strict_yaml("a: \"true\"\nb: 'false'\n", "m.yaml");
  EXPECT_FALSE(strict_bool(q["a"]).has_value());
  EXPECT_FALSE(strict_bool(q["b"]).has_value());
  EXPECT_TRUE(yaml11_boolean_spelling("yes"));
  EXPECT_TRUE(yaml11_boolean_spelling("OFF"));
  EXPECT_FALSE(yaml11_boolean_spelling("true"));
  EXPECT_FALSE(yaml11_boolean_spelling("norm_topk_prob"));
}

// A recipe's `dry_run: yes` used to run the real conversion; `to:` twice kept the first.
TEST(StrictYaml, RecipeRefusesYaml11BooleansAndDuplicateKeys) {
  test::temp_dir d;
  std::string src = test::fixture("qwen3_moe/hf");
  for (const char* spelling : {"yes", "True", "on", "1"}) {
    test::write_bytes(d / "r.yaml", "source: " + src + "\noutput: " + (d / "out") + "\nto: grouped\ndry_run: " + spelling + "\n");
    auto r = test::run_moereg("convert --config " + (d / "r.yaml"));
    EXPECT_EQ(r.exit_code, 1) << spelling << "\n" << r.output;
    EXPECT_NE(r.output.find((d / "r.yaml") + ":4:1: dry_run '" + spelling + "': expected true or false"),
              std::string::npos)
        << r.output;
    EXPECT_FALSE(fs::exists(d / "out")) << "nothing converted for dry_run: " << spelling;
  }
  test::write_bytes(d / "r.yaml", "source: " + src + "\noutput: " + (d / "out") + "\nto: grouped\ndry_run: true\n");
  auto r = test::run_moereg("convert --config " + (d / "r.yaml"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(d / "out")) << "dry_run: true writes nothing";

  test::write_bytes(d / "r.yaml", "source: " + src + "\noutput: " + (d / "out") + "\nto: grouped\nto: hf\n");
  r = test::run_moereg("convert --config " + (d / "r.yaml"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find((d / "r.yaml") + ":4:1: duplicate key 'to' (first given at line 3)"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d / "out"));

  // A second document was ignored: its `to` never reached the conversion. An empty one (a
  // trailing `---`) is no content and is accepted.
  test::write_bytes(d / "r.yaml", "source: " + src + "\noutput: " + (d / "out") + "\n---\nto: grouped\n");
  r = test::run_moereg("convert --config " + (d / "r.yaml"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find((d / "r.yaml") + ":3:1: a second YAML document"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d / "out"));
  test::write_bytes(d / "r.yaml", "source: " + src + "\noutput: " + (d / "out") + "\nto: grouped\ndry_run: true\n---\n");
  r = test::run_moereg("convert --config " + (d / "r.yaml"));
  EXPECT_EQ(r.exit_code, 0) << r.output;

  test::write_bytes(d / "r.yaml", "source: " + src + "\noutput: " + (d / "out") + "\nto: grouped\ndry_run: \"true\"\n");
  r = test::run_moereg("convert --config " + (d / "r.yaml"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("dry_run 'true': expected true or false, unquoted"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(d / "out"));
}

}  // namespace test_strict_yaml
