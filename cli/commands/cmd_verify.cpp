// SPDX-License-Identifier: Apache-2.0
// moereg verify A B: exit 0 only when both checkpoints hold the same tensors. Checkpoints of
// one family in different layouts are compared through their layouts (piece by piece).
#include <iostream>
#include <limits>

#include "command.h"
#include "model_session.h"
#include "moereg/base/error.h"
#include "moereg/base/log.h"
#include "moereg/base/printable.h"
#include "moereg/checkpoint/compare.h"
#include "moereg/plan/compare_decoded.h"
#include "option_values.h"
#include "plugin_options.h"

namespace moereg::cli {

namespace {

std::unique_ptr<model_session> try_open(const std::string& path, const po::variables_map& vm) {
  try {
    session_request req;
    req.checkpoint = path;
    return std::make_unique<model_session>(open_model(req, vm));
  } catch (const error& e) {
    spdlog::debug("{}: compared by tensor names only ({})", path, e.what());
    return nullptr;
  }
}

}  // namespace

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

  comparison c;
  std::string how = "by tensor name";
  auto ma = try_open(pa, vm), mb = try_open(pb, vm);
  if (ma && mb && ma->model_type == mb->model_type && ma->layout->name != mb->layout->name) {
    decoded_checkpoint da = decode_checkpoint(*ma->ckpt, ma->spec, *ma->layout, ma->dims);
    decoded_checkpoint db = decode_checkpoint(*mb->ckpt, mb->spec, *mb->layout, mb->dims);
    c = compare_decoded(da, db, ma->hooks(), mb->hooks());
    how = "through layouts " + ma->layout->name + " and " + mb->layout->name + " (family " + ma->model_type + ")";
  } else {
    checkpoint_options opts;
    opts.require_config = false;
    c = compare_checkpoints(checkpoint::open(pa, opts), checkpoint::open(pb, opts));
  }
  if (globals.json) {
    json::value v = comparison_to_json(c);
    v.set("compared_how", json::value(how));
    std::cout << json::dump(v, 2) << "\n";
    return c.equal() ? 0 : 1;
  }
  if (c.equal()) {
    std::cout << "equal: " << c.compared << " tensors, " << c.bytes_compared << " bytes compared " << how << "\n";
    return 0;
  }
  std::cout << "different: " << c.differences.size() << " differences (" << c.compared << " compared " << how << ")\n";
  for (std::size_t i = 0; i < c.differences.size() && i < limit; ++i) {
    const auto& d = c.differences[i];
    std::cout << "  " << d.kind << "  " << printable(d.name) << "  " << printable_message(d.detail) << "\n";
  }
  if (c.differences.size() > limit) std::cout << "  ... and " << c.differences.size() - limit << " more (--max-report)\n";
  return 1;
}

}  // namespace moereg::cli
