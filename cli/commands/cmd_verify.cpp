// moereg verify A B: exit 0 only when both checkpoints hold the same tensors.
#include <iostream>

#include "command.h"
#include "moereg/checkpoint/compare.h"

namespace moereg::cli {

int run_verify(const std::vector<std::string>& args, global_options& globals) {
  command_parser p("verify A B [--json]",
                   "Compare two checkpoints tensor by tensor: names, dtypes, shapes and bytes. Exit status 0\n"
                   "when they hold the same tensors, 1 otherwise, listing every difference (missing on\n"
                   "either side, dtype or shape differences, and the first differing element).");
  p.options().add_options()("a", po::value<std::string>()->required(), "first checkpoint")(
      "b", po::value<std::string>()->required(), "second checkpoint")(
      "max-report", po::value<std::size_t>()->default_value(50), "list at most this many differences (text output)");
  p.positional("a", 1).positional("b", 1);
  auto vm = p.parse(args, globals);
  checkpoint_options opts;
  opts.require_config = false;
  checkpoint a = checkpoint::open(vm["a"].as<std::string>(), opts);
  checkpoint b = checkpoint::open(vm["b"].as<std::string>(), opts);
  comparison c = compare_checkpoints(a, b);
  if (globals.json) {
    std::cout << json::dump(comparison_to_json(c), 2) << "\n";
    return c.equal() ? 0 : 1;
  }
  if (c.equal()) {
    std::cout << "equal: " << c.compared << " tensors, " << c.bytes_compared << " bytes compared\n";
    return 0;
  }
  std::size_t limit = vm["max-report"].as<std::size_t>();
  std::cout << "different: " << c.differences.size() << " of " << std::max<std::uint64_t>(c.compared, 1)
            << " tensors compared differ or are missing\n";
  for (std::size_t i = 0; i < c.differences.size() && i < limit; ++i) {
    const auto& d = c.differences[i];
    std::cout << "  " << d.kind << "  " << d.name << "  " << d.detail << "\n";
  }
  if (c.differences.size() > limit) std::cout << "  ... and " << c.differences.size() - limit << " more (--max-report)\n";
  return 1;
}

}  // namespace moereg::cli
