// SPDX-License-Identifier: Apache-2.0
// moereg_convert_example CKPT OUT LAYOUT: opens a checkpoint, says what it is, and converts
// it to another layout of its family with a progress count - through libmoereg's API alone.
#include <moereg/app/moereg.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " CKPT OUT LAYOUT\n";
    return 2;
  }
  moereg::app::set_log_level("warn");
  auto model = moereg::app::open_model({argv[1], "", "", {}});
  if (!model) {
    std::cerr << "cannot open: " << model.error().message << "\n";
    return 1;
  }
  std::cout << argv[1] << ": family " << model.value().family << ", layout " << model.value().layout << ", "
            << model.value().tensors.size() << " tensors\n";

  moereg::app::convert_request job;
  job.source = argv[1];
  job.output = argv[2];
  job.to = argv[3];
  job.on_progress = [](const moereg::app::convert_progress& p) {
    if (p.final) std::cout << "wrote " << p.bytes << " of " << p.total_bytes << " bytes\n";
  };
  auto done = moereg::app::convert(job);
  if (!done) {
    std::cerr << "cannot convert (" << to_string(done.error().kind) << "): " << done.error().message << "\n";
    return done.error().kind == moereg::app::error_kind::usage ? 2 : 1;
  }
  std::cout << "converted to " << done.value().to << ": " << done.value().tensors << " tensors in "
            << done.value().shards << " file(s)\n";
  return 0;
}
