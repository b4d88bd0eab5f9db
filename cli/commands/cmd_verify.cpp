// SPDX-License-Identifier: Apache-2.0
// moereg verify A B: exit 0 only when both checkpoints hold the same tensors. Checkpoints of
// one family in different layouts are compared through their layouts (piece by piece).
#include <iostream>
#include <limits>

#include "api_result.h"
#include "command.h"
#include "moereg/app/verify.h"
#include "moereg/base/json.h"
#include "moereg/base/printable.h"
#include "option_values.h"
#include "plugin_options.h"

namespace moereg::cli {

int run_verify(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("verify A B [--json]",
                   "Compare two checkpoints tensor by tensor: names, dtypes, shapes and bytes. When both are\n"
                   "checkpoints of one family stored in different layouts (hf and transformers_v5, say), the\n"
                   "layouts are resolved: every expert piece and every other tensor is compared through them.\n"
                   "Exit status 0 when they hold the same tensors, 1 otherwise, listing every difference\n"
                   "(missing on either side, dtype or shape differences, and the first differing element).");
  p.options().add_options()("a", po::value<std::string>()->required(), "first checkpoint")(
      "b", po::value<std::string>()->required(), "second checkpoint")(
      "max-report", po::value<std::string>()->default_value("50"), "list at most this many differences (text output)");
  add_plugin_options(p.options());
  p.positional("a", 1).positional("b", 1);
  auto vm = p.parse(args, globals);
  std::string pa = vm["a"].as<std::string>(), pb = vm["b"].as<std::string>();
  const auto limit = static_cast<std::size_t>(
      integer_value(cli_value(vm, "max-report"), 0, std::numeric_limits<std::int64_t>::max(), "differences listed"));

  const app::verify_report c = take(app::verify({pa, pb, plugin_paths(vm)}));
  if (globals.json) {
    json::array diffs;
    for (const auto& d : c.differences)
      diffs.emplace_back(json::value(json::object{{"name", json::value(d.name)}, {"kind", json::value(d.kind)},
                                                  {"detail", json::value(d.detail)}}));
    json::value v(json::object{{"equal", json::value(c.equal)}, {"compared", json::value(c.compared)},
                               {"bytes_compared", json::value(c.bytes_compared)}, {"differences", json::value(std::move(diffs))},
                               {"compared_how", json::value(c.how)}});
    std::cout << json::dump(v, 2) << "\n";
    return c.equal ? 0 : 1;
  }
  if (c.equal) {
    std::cout << "equal: " << c.compared << " tensors, " << c.bytes_compared << " bytes compared " << c.how << "\n";
    return 0;
  }
  std::cout << "different: " << c.differences.size() << " differences (" << c.compared << " compared " << c.how << ")\n";
  for (std::size_t i = 0; i < c.differences.size() && i < limit; ++i) {
    const auto& d = c.differences[i];
    std::cout << "  " << d.kind << "  " << printable(d.name) << "  " << printable_message(d.detail) << "\n";
  }
  if (c.differences.size() > limit) std::cout << "  ... and " << c.differences.size() - limit << " more (--max-report)\n";
  return 1;
}

}  // namespace moereg::cli
