// SPDX-License-Identifier: Apache-2.0
// lora_reader_detail.h - the reader of an adapter directory (private to lora_reader*.cpp): one
// class whose phases are split over lora_reader.cpp (config, tensors, PEFT pairs, orientation)
// and lora_reader_nemo.cpp (NeMo's grouped tensors).
#pragma once

#include <array>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lora_naming_detail.h"
#include "lora_targets_detail.h"

namespace moereg::lora_detail {

// PEFT's pattern lookup (rank_pattern, alpha_pattern): a key matches a module name that
// ends with it at a dot boundary, keys read as regular expressions.
const json::value* pattern_value(const json::value& config, const char* field, const std::vector<std::string>& names);

struct factor_pair {
  const tensor_info* A = nullptr;
  const tensor_info* B = nullptr;
};

inline matrix_view view_of(const checkpoint::entry* e, std::uint64_t offset, std::int64_t rows, std::int64_t cols, std::int64_t rs,
                    std::int64_t cs) {
  matrix_view v;
  v.source = e;
  v.offset = offset;
  v.rows = rows;
  v.cols = cols;
  v.row_stride = rs;
  v.col_stride = cs;
  v.type = e->info->type;
  return v;
}

inline bool float_type(dtype t) { return t == dtype::F32 || t == dtype::BF16 || t == dtype::F16; }

struct geometry {
  std::int64_t out, in;
};
inline geometry geom(piece p, const model_dims& d) { return p == piece::down ? geometry{d.H, d.I} : geometry{d.I, d.H}; }

// Reads one adapter directory phase by phase: its config (what no form can carry is refused
// before any tensor is looked at), its tensors grouped by module, each PEFT pair classified
// (a ParamWrapper pair on the fused experts, a per-expert pair, or another module carried
// through), the ParamWrapper orientation, NeMo's grouped tensors. Problems with tensors are
// collected and reported together at the end.
class adapter_reader {
 public:
  adapter_reader(const std::string& dir, const family_spec& spec, const model_dims& dims, const lora_read_options& options)
      : dir_(dir), spec_(spec), dims_(dims), options_(options), moe_(dims.moe_layers.begin(), dims.moe_layers.end()) {}

  lora_adapter read() {
    read_config();
    open_weights();
    group_tensors();
    find_targets();
    read_peft_pairs();
    read_wrapper_orientation();
    read_nemo();
    return finish();
  }

 private:
  // A ParamWrapper pair waits until the orientation is known.
  struct wrapper_pair {
    const fused_target* target;
    int layer;
    factor_pair f;
    std::string module;
    int rank;
    double alpha;
    bool fits_new, fits_old;
  };

  void read_config();
  void open_weights();
  void group_tensors();
  void find_targets();
  void read_peft_pairs();
  void read_wrapper_pair(const std::string& m, int depth, const factor_pair& f, const std::string& what,
                         const std::vector<const fused_target*>& params, const captures& c);
  bool read_per_expert_pair(const std::string& m, const factor_pair& f, const std::string& what);
  void read_other_pair(const std::string& m, const factor_pair& f, const std::string& what);
  // False (and the pair noted) when PEFT would not apply it: `why` from peft_targets.
  bool targeted(const factor_pair& f, const std::string& why);
  void report_untargeted();
  void read_wrapper_orientation();
  void read_nemo();
  lora_adapter finish();

  void problem(std::string s) { problems_.push_back(std::move(s)); }
  const checkpoint::entry* entry_for(const tensor_info* t) {
    a_.sources.push_back(std::make_unique<checkpoint::entry>(checkpoint::entry{a_.file.get(), t}));
    return a_.sources.back().get();
  }
  // The rank and alpha adapter_config.json gives the first of `names` that a pattern names.
  void expected(const std::vector<std::string>& names, int* rank, double* alpha) const {
    const json::value* rv = pattern_value(a_.config, "rank_pattern", names);
    const json::value* av = pattern_value(a_.config, "alpha_pattern", names);
    *rank = rv && rv->is_integer() ? static_cast<int>(rv->as_int()) : a_.rank;
    *alpha = av && av->is_number() ? av->as_double() : a_.alpha;
  }
  std::array<std::optional<lora_pair>, 3>& slot(int layer, std::int64_t expert) {
    auto& v = a_.experts[layer];
    if (v.empty()) v.resize(static_cast<std::size_t>(dims_.E));
    return v[static_cast<std::size_t>(expert)];
  }
  bool layer_ok(int layer, const std::string& tensor) {
    if (moe_.count(layer)) return true;
    problem(a_.weights_path + ": " + tensor + ": layer " + std::to_string(layer) + " of the base holds no routed experts (" +
            dims_.describe() + ", " + std::to_string(dims_.moe_layers.size()) + " MoE layers): an adapter for another model?");
    return false;
  }

  const std::string& dir_;
  const family_spec& spec_;
  const model_dims& dims_;
  const lora_read_options& options_;
  const std::set<int> moe_;
  lora_adapter a_;
  std::vector<std::string> problems_;
  std::map<std::pair<std::string, int>, factor_pair> peft_;                    // (module, base_layer depth) -> pair
  std::map<std::string, std::map<std::string, const tensor_info*>> nemo_;     // module -> suffix -> tensor
  std::vector<fused_target> fused_;
  std::vector<per_expert_template> split_;
  key_template gmod_;
  std::vector<std::string> target_params_;
  std::optional<peft_targets> targets_;  // none for a NeMo adapter (NeMo matches its own way)
  std::vector<std::pair<std::string, std::string>> untargeted_;  // (lora_A tensor, why)
  bool any_wrapper_ = false, any_split_ = false, any_nemo_ = false;
  std::vector<wrapper_pair> wrappers_;
};

}  // namespace moereg::lora_detail
