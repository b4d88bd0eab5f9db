// SPDX-License-Identifier: Apache-2.0
// lora_adapter.h - a LoRA adapter directory (adapter_config.json + adapter_model.safetensors)
// read into the family's canonical terms: every factor pair on a routed expert becomes
// A_e [r, in] and B_e [out, r] attached to gate[e], up[e] or down[e] of a layer (the same
// canonical matrices a checkpoint decodes to, docs/lora.md), every other pair is kept under
// the canonical name of the weight it adapts.
//
// Three forms store the expert pairs (docs/lora.md has the exact index arithmetic):
//   peft_param_wrapper  PEFT >= 0.18 target_parameters on the fused experts: the expert index
//                       folded into the rank; two orientations (PEFT <= 0.19.0 and >= 0.19.1)
//   peft_per_expert     one PEFT LoRA pair per expert module (transformers 4 models)
//   nemo_grouped        NeMo Automodel's grouped experts: [E, in, r] and [E, r, out] tensors
// Nothing is copied: the pairs are strided views into the mapped adapter file.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "moereg/base/json.h"
#include "moereg/layout/family_spec.h"
#include "moereg/plan/decoded_checkpoint.h"
#include "moereg/safetensors/safetensors_reader.h"

namespace moereg {

enum class lora_form { peft_param_wrapper, peft_per_expert, nemo_grouped };
const char* lora_form_name(lora_form f);
// "peft_param_wrapper" etc.; nullopt for anything else.
std::optional<lora_form> parse_lora_form(const std::string& name);

// How a ParamWrapper adapter orients its factors. PEFT 0.18.x and 0.19.0 took in and out
// positionally from the fused parameter [E, 2I, H] (in = 2I, out = H); 0.19.1 swapped them
// to the matrix's true in and out. Other forms have no orientation (none).
enum class lora_orientation { none, peft_0_19_1, peft_0_18 };
const char* lora_orientation_name(lora_orientation o);

// One LoRA pair in canonical orientation: delta = scale * B @ A, A [rank, in], B [out, rank].
struct lora_pair {
  matrix_view A, B;
  double alpha = 0;  // lora_alpha of the target it came from (alpha_pattern applied)
  int rank = 0;      // the rank of that target (a fused gate_up target of rank 2r gives pairs of rank 2r)
  bool rslora = false;
  // PEFT's scaling: lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
  double scale() const;
};

// A pair outside the routed experts (attention, shared experts, dense MLPs, routers).
struct lora_module_pair {
  std::string canonical;  // the adapted weight's canonical name: "model.layers.0.self_attn.q_proj.weight"
  std::string stored;     // the module as the adapter names it (without "base_model.model.")
  lora_pair pair;
};

// Where the forms name things, derived from the family's layouts (docs/lora.md):
// `modules` names the model's modules as PEFT sees them (the layout called transformers_v5,
// else the reference layout), `split` is the first layout storing one tensor per expert (its
// leaf names, w1/gate_proj, name the per-expert modules), `grouped` the NeMo layout (the one
// called grouped, else `modules`).
struct lora_naming {
  const layout_spec* modules = nullptr;
  const layout_spec* split = nullptr;
  const layout_spec* grouped = nullptr;
};
lora_naming derive_lora_naming(const family_spec& spec);

struct lora_read_options {
  // --peft-version: the PEFT version that wrote a ParamWrapper adapter whose config lacks
  // peft_version. A config that has one wins only when they agree; otherwise an error.
  std::string peft_version;
  // The base model, when known: its config.json's architectures[0] is compared with the
  // adapter's auto_mapping.base_model_class, and (with `base`) every pair outside the experts
  // must adapt a 2-D weight of the base of shape [out, in].
  std::string base_architecture;
  const decoded_checkpoint* base = nullptr;
  // Pairs on modules that adapter_config.json does not target (target_modules, exclude_modules,
  // layers_to_transform, target_parameters as PEFT matches them): PEFT builds no LoRA layer there
  // and skips them as unexpected keys. Refused (one error naming the file, tensor and field)
  // unless kept: then they are left out and listed in lora_adapter::untargeted (inspect).
  bool keep_untargeted = false;
};

struct lora_adapter {
  std::string dir;
  std::string config_path;   // dir/adapter_config.json
  std::string weights_path;  // dir/adapter_model.safetensors
  json::value config;
  std::unique_ptr<safetensors_file> file;
  std::vector<std::unique_ptr<checkpoint::entry>> sources;  // what the views point at
  const family_spec* spec = nullptr;
  model_dims dims;
  lora_naming naming;

  lora_form form = lora_form::peft_per_expert;
  lora_orientation orientation = lora_orientation::none;
  std::string orientation_reason;  // how the orientation was decided (inspect prints it)
  int rank = 0;                    // config r
  double alpha = 0;                // config lora_alpha
  bool rslora = false;

  // experts[layer][expert][piece]: the pair on that canonical matrix, if adapted.
  std::map<int, std::vector<std::array<std::optional<lora_pair>, 3>>> experts;
  std::vector<lora_module_pair> others;  // sorted by canonical name
  // With lora_read_options::keep_untargeted: "<tensor>: <why PEFT does not apply it>" per pair left out.
  std::vector<std::string> untargeted;

  // Whether every adapted expert's gate and up pairs hold the same A (bytes): then PEFT's
  // fused gate_up pair keeps rank r; otherwise it is block-diagonal of rank 2r.
  bool gate_up_share_A() const;
  std::size_t expert_pair_count() const;
};

// Read dir against the family and dimensions of its base model. Throws moereg::error naming
// the file and tensor for every problem: unknown peft_type, DoRA / bias / fan_in_fan_out,
// tensors of no known form, factors missing or of the wrong shape, a rank that disagrees with
// the config, an expert or layer the base does not have, an undecidable orientation, factors on
// a module or layer the config does not target (lora_read_options::keep_untargeted).
lora_adapter read_lora_adapter(const std::string& dir, const family_spec& spec, const model_dims& dims,
                               const lora_read_options& options = {});

// Throws moereg::error naming what is wrong when `dir` is not an adapter directory: missing,
// not a directory, or without adapter_config.json or adapter_model.safetensors (an
// adapter_model.bin is named as the pickle it is).
void check_lora_adapter_dir(const std::string& dir);

// The path of the base model an adapter names (base_model_name_or_path), when it is a local
// directory holding config.json: relative paths are taken from the adapter directory, then
// from the working directory. Empty when there is none.
std::string lora_local_base(const std::string& adapter_dir);

// "0.19.1" -> {0, 19, 1}; throws moereg::error naming `where` when it is not a version.
std::array<int, 3> parse_peft_version(const std::string& v, const std::string& where);

}  // namespace moereg
