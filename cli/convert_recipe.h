// SPDX-License-Identifier: Apache-2.0
// convert_recipe.h - `moereg convert --config recipe.yaml`: a recipe's keys as option values,
// each remembering the file, line and column that wrote it, so that a value found wrong (when
// read, or only later against the checkpoint) is reported there:
//   recipe.yaml:3:1: experts '0:64': --experts 0:64 is not a non-empty range within 0:8 (E=8)
// The command line wins over a recipe: a value given in both places is taken from the command
// line, with a warning naming both when they differ.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "moereg/app/convert.h"

namespace moereg::cli {

struct recipe_value {
  std::string text;   // the scalar as written (dry_run: "true" or "false")
  std::string where;  // "recipe.yaml:3:1", the position of its key
};

// A recipe's values by key (source, output, to, from, family, shard_size, threads, experts,
// dry_run, dtype; description is skipped). Unknown keys, non-scalar values and booleans other
// than true/false are refused naming file:line:column (moereg::error).
std::map<std::string, recipe_value> read_recipe(const std::string& path);

// Fills the options (keyed as the recipe's keys) that the command line left unset from the
// recipe; returns the values taken, by key. A key set on both sides keeps the command line's
// value, and a warning names both when they differ. `option_names` gives the command line's
// spelling of a key ("source" -> "CKPT", "shard_size" -> "--shard-size").
std::map<std::string, recipe_value> merge_recipe(const std::map<std::string, recipe_value>& recipe,
                                                 std::map<std::string, std::string>& opts,
                                                 const std::map<std::string, std::string>& option_names);

// Runs `run` (the conversion of `job`) and returns its status. When it fails (moereg::error or
// usage_error) and a value taken from the recipe (`taken`, as merge_recipe returns) is what the
// checkpoint or the output refused, the failure is rethrown as a moereg::error (exit 1) prefixed
// with that value's position: "recipe.yaml:2:1: to 'transformer_v5': <the message>". The value
// at fault is found on the failure path only, with dry runs (nothing written) of the job without
// one value at a time: the one whose absence makes the failure go away. Other failures pass
// through unchanged.
int run_with_recipe(const app::convert_request& job, const std::map<std::string, recipe_value>& taken,
                    const std::function<int()>& run);

}  // namespace moereg::cli
