// SPDX-License-Identifier: Apache-2.0
// moereg plugins list|show NAME|check DIR: what the registry found, from where, and what it
// refused and why; and a plugin author's checker that reports every problem at once. One
// file per subcommand (cmd_plugins_*.cpp).
#include <iostream>

#include "command.h"
#include "moereg/base/error.h"
#include "moereg/base/json.h"
#include "moereg/base/printable.h"
#include "moereg/registry/plugin_registry.h"
#include "plugins_commands.h"
#include "plugin_options.h"

namespace moereg::cli {

std::string shown_path(const plugin_record& r) {
  if (r.kind == plugin_kind::family) return r.directory;
  return r.library_path.empty() ? r.directory : r.library_path;
}

json::value record_json(const plugin_record& r) {
  json::value v = json::object{};
  v.set("name", r.name);
  v.set("kind", to_string(r.kind));
  v.set("version", r.version);
  v.set("api_version", r.api_version);
  v.set("state", to_string(r.state));
  v.set("source", r.source);
  v.set("path", shown_path(r));
  v.set("manifest", r.manifest_path);
  v.set("library", r.library_path);
  v.set("reason", r.reason);
  if (r.kind == plugin_kind::backend) v.set("probe_score", r.probe_score);
  json::array types, hooks;
  for (const auto& t : r.model_types) types.emplace_back(t);
  for (const auto& h : r.hooks) hooks.emplace_back(h);
  v.set("model_types", std::move(types));
  v.set("hooks", std::move(hooks));
  return v;
}

json::value search_dirs_json(const plugin_registry& reg) {
  json::array dirs;
  for (const auto& d : reg.search_dirs()) {
    json::value v = json::object{};
    v.set("path", d.path);
    v.set("source", d.source);
    v.set("exists", d.exists);
    dirs.push_back(std::move(v));
  }
  return dirs;
}

int run_plugins(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("plugins [list | show NAME | check DIR] [--plugin-path DIR]... [--json]",
                   "list: every plugin and backend found, in search order (--plugin-path DIRs, then\n"
                   "MOEREG_PLUGIN_PATH, then those installed beside the binary), with its version, plugin API,\n"
                   "state (loaded, available, refused, shadowed), where it came from, and why it was refused.\n"
                   "show NAME: one plugin's record and manifest summary.\n"
                   "check DIR: every problem with the plugin in DIR, each as file:line: what was expected;\n"
                   "exit status 1 if there is any.");
  p.options().add_options()("action", po::value<std::string>()->default_value("list"), "list, show or check")(
      "operand", po::value<std::vector<std::string>>(), "NAME for show, DIR for check");
  add_plugin_options(p.options());
  p.positional("action", 1).positional("operand", -1);
  auto vm = p.parse(args, globals);
  std::string action = vm["action"].as<std::string>();
  std::vector<std::string> operands;
  if (vm.count("operand")) operands = vm["operand"].as<std::vector<std::string>>();
  auto want = [&](std::size_t n, const char* what) {
    if (operands.size() != n)
      throw usage_error("plugins " + action + " takes " + what + ", found " + std::to_string(operands.size()) +
                        " argument(s)\n(see: moereg plugins --help)");
  };
  if (action == "list") {
    want(0, "no argument");
    return plugins_list(*make_registry(vm), globals.json);
  }
  if (action == "show") {
    want(1, "one NAME");
    return plugins_show(*make_registry(vm), operands[0], globals.json);
  }
  if (action == "check") {
    want(1, "one DIR");
    return plugins_check(*make_registry(vm), operands[0], globals.json);
  }
  throw usage_error("unknown plugins action '" + action + "', expected list, show or check\n(see: moereg plugins --help)");
}

}  // namespace moereg::cli
