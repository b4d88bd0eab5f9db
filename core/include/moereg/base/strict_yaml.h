// SPDX-License-Identifier: Apache-2.0
// strict_yaml.h - how moereg reads the YAML people write (plugin manifests, conversion
// recipes): yaml-cpp with the two leniencies that turn typos into silent wrong results
// taken away.
//
// - A key given twice in one map is refused, naming both lines (yaml-cpp keeps the first).
// - A boolean is `true` or `false` only (YAML 1.2 core schema): yaml-cpp's as<bool> also
//   takes yes/no/on/off/y/n in any case, so `dry_run: yes` would be a string elsewhere and
//   a boolean here; strict_bool refuses everything but the two words.
//
// Every message is "file:line:column: what", 1-based, the way compilers print it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>

namespace moereg {

// Reads and parses a YAML file. Throws moereg::error for an unreadable file (a directory,
// no permission), a syntax error, or a duplicate key.
YAML::Node load_strict_yaml_file(const std::string& path);

// The same for text already in memory; `name` is the file name used in messages.
YAML::Node load_strict_yaml(const std::string& text, const std::string& name);

// "file:line:column" of a node (or of the mark) as loaded; "file" alone for a node made in
// memory, which has no position.
std::string yaml_where(const std::string& file, const YAML::Mark& mark);
std::string yaml_where(const std::string& file, const YAML::Node& node);

// true / false for a scalar spelled exactly so; nullopt for anything else (yes, True, 1, a map).
std::optional<bool> strict_bool(const YAML::Node& node);

// A scalar YAML 1.1 would read as a boolean but YAML 1.2 reads as a string (yes, No, on,
// OFF, y, True...): worth a message of its own where a boolean or a name is expected.
bool yaml11_boolean_spelling(const std::string& scalar);

}  // namespace moereg
