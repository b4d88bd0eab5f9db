// SPDX-License-Identifier: Apache-2.0
// The command table. Add a command: write commands/cmd_<name>.cpp and list it here.
#include "command.h"

namespace moereg::cli {

int run_inspect(const std::vector<std::string>&, global_options&);
int run_verify(const std::vector<std::string>&, global_options&);
int run_demo(const std::vector<std::string>&, global_options&);
int run_plugins(const std::vector<std::string>&, global_options&);
int run_convert(const std::vector<std::string>&, global_options&);
int run_synth(const std::vector<std::string>&, global_options&);
int run_moe(const std::vector<std::string>&, global_options&);
int run_lora(const std::vector<std::string>&, global_options&);

const std::vector<command>& commands() {
  static const std::vector<command> table = {
      {"inspect", "summarise a checkpoint: tensors, dtypes, shapes, bytes", run_inspect},
      {"convert", "convert a checkpoint to another layout of its family", run_convert},
      {"verify", "compare two checkpoints tensor by tensor", run_verify},
      {"synth", "write a synthetic checkpoint of real MoE shapes", run_synth},
      {"moe", "run a checkpoint's MoE layer (moe run) or time one against PyTorch (moe bench)", run_moe},
      {"lora", "expert LoRA adapters: inspect, convert between PEFT/NeMo forms, merge into a checkpoint", run_lora},
      {"demo", "run every feature on a small built-in example", run_demo},
      {"plugins", "list, show or check family plugins and backends", run_plugins},
  };
  return table;
}

}  // namespace moereg::cli
