// SPDX-License-Identifier: Apache-2.0
// Which modules PEFT builds a LoRA layer on, from adapter_config.json (lora_targets_detail.h).
#include "lora_targets_detail.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "moereg/lora/lora_adapter.h"

namespace moereg::lora_detail {

namespace {

bool equal_or_dotted_suffix(const std::string& key, const std::string& entry) {
  return key == entry || (key.size() > entry.size() && key.compare(key.size() - entry.size(), entry.size(), entry) == 0 &&
                          key[key.size() - entry.size() - 1] == '.');
}

std::optional<std::regex> compile(const std::string& pattern) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error&) {
    return std::nullopt;
  }
}

std::vector<std::string> strings(const json::value& v) {
  std::vector<std::string> out;
  for (const auto& e : v.as_array())
    if (e.is_string()) out.push_back(e.as_string());
  return out;
}

}  // namespace

peft_targets::peft_targets(const json::value& cfg) {
  auto field = [&](const char* k) -> const json::value* {
    const json::value* v = cfg.find(k);
    return v && !v->is_null() ? v : nullptr;
  };
  if (const json::value* t = field("target_modules")) {
    target_text_ = json::dump(*t);
    if (t->is_array()) {
      target_ = kind::list;
      target_list_ = strings(*t);
    } else if (t->is_string()) {
      std::string lower = t->as_string();
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      target_ = lower == "all-linear" ? kind::all_linear : kind::regex;
      if (target_ == kind::regex) target_re_ = compile(t->as_string());
    }
  }
  if (const json::value* x = field("exclude_modules")) {
    exclude_text_ = json::dump(*x);
    if (x->is_array() && !x->as_array().empty()) {
      exclude_ = kind::list;
      exclude_list_ = strings(*x);
    } else if (x->is_string() && !x->as_string().empty()) {
      exclude_ = kind::regex;
      exclude_re_ = compile(x->as_string());
    }
  }
  if (const json::value* p = field("target_parameters"); p && p->is_array()) {
    parameters_ = strings(*p);
    parameters_text_ = json::dump(*p);
  }
  if (const json::value* l = field("layers_to_transform")) {
    layers_text_ = json::dump(*l);
    if (l->is_integer()) {
      layers_.push_back(static_cast<long>(l->as_int()));
      layers_set_ = true;
    } else if (l->is_array() && !l->as_array().empty()) {
      for (const auto& e : l->as_array())
        if (e.is_integer()) layers_.push_back(static_cast<long>(e.as_int()));
      layers_set_ = true;
    }
  }
  if (const json::value* lp = field("layers_pattern")) {
    if (lp->is_string() && !lp->as_string().empty()) layers_pattern_.push_back(lp->as_string());
    if (lp->is_array()) layers_pattern_ = strings(*lp);
    if (!layers_pattern_.empty()) layers_text_ += " with layers_pattern " + json::dump(*lp);
  }
  if (const json::value* pv = field("peft_version"); pv && pv->is_string()) {
    try {
      first_index_ = parse_peft_version(pv->as_string(), "peft_version") >= std::array<int, 3>{0, 20, 0};
    } catch (const std::exception&) {
      // Not a version: which layer rule PEFT used stays unknown.
    }
  }
}

std::optional<bool> peft_targets::matches(kind k, const std::vector<std::string>& list, const std::optional<std::regex>& re,
                                          const std::string& key) const {
  if (k == kind::list) return std::any_of(list.begin(), list.end(), [&](const std::string& e) { return equal_or_dotted_suffix(key, e); });
  if (k == kind::regex) {
    if (!re) return std::nullopt;
    return std::regex_match(key, *re);
  }
  return std::nullopt;
}

bool peft_targets::parameter(const std::string& key) const {
  return std::any_of(parameters_.begin(), parameters_.end(), [&](const std::string& e) { return equal_or_dotted_suffix(key, e); });
}

std::optional<long> peft_targets::layer_index(const std::string& key, bool first) const {
  // PEFT: re.match(r".*?\.[^.]*\.(\d+)\.", key), or rf".*?\.{pattern}\.(\d+)\." per pattern, the
  // first that matches (".*" instead of ".*?" before 0.20.0).
  const std::string lead = first ? ".*?" : ".*";
  std::vector<std::string> patterns;
  if (layers_pattern_.empty()) patterns.push_back(lead + "\\.[^.]*\\.(\\d+)\\.");
  for (const auto& p : layers_pattern_) patterns.push_back(lead + "\\." + p + "\\.(\\d+)\\.");
  for (const auto& p : patterns) {
    std::smatch m;
    if (std::regex_search(key, m, std::regex(p, std::regex::ECMAScript), std::regex_constants::match_continuous))
      return std::stol(m[1].str());
  }
  return std::nullopt;
}

peft_targets::result peft_targets::modules(const std::string& key) const {
  result r;
  // exclude_modules first: an excluded module is never targeted.
  std::optional<bool> excluded = exclude_ == kind::absent ? std::optional<bool>(false) : matches(exclude_, exclude_list_, exclude_re_, key);
  if (excluded.value_or(false)) {
    r.v = verdict::not_applied;
    r.why = "exclude_modules " + exclude_text_ + (exclude_ == kind::list ? " names " : " matches ") + key;
    return r;
  }
  switch (target_) {
    case kind::absent:
      r.v = verdict::undecided;  // PEFT fills in a default for the model type
      break;
    case kind::all_linear:
      if (key == "lm_head") {
        r.v = verdict::not_applied;
        r.by_target = true;
        r.why = "target_modules " + target_text_ + " leaves out the output layer lm_head (PEFT's _maybe_include_all_linear_layers)";
      }
      break;
    case kind::regex: {
      std::optional<bool> m = matches(target_, target_list_, target_re_, key);
      if (!m) r.v = verdict::undecided;
      else if (!*m) {
        r.v = verdict::not_applied;
        r.by_target = true;
        r.why = "target_modules " + target_text_ + " does not match " + key + " (PEFT full-matches a string as a regular expression)";
      }
      break;
    }
    case kind::list:
      if (!*matches(target_, target_list_, target_re_, key)) {
        r.v = verdict::not_applied;
        r.by_target = true;
        r.why = "target_modules " + target_text_ + " does not name " + key +
                " (PEFT takes a list entry equal to the module name or ending it after a dot)";
      } else if (layers_set_) {
        std::optional<long> first, last;
        try {
          first = layer_index(key, true);
          last = layer_index(key, false);
        } catch (const std::exception&) {  // a layers_pattern std::regex cannot compile, an index past long
          r.v = verdict::undecided;
          break;
        }
        if (!first) {  // the two rules find an index in the same names
          r.v = verdict::not_applied;
          r.why = "layers_to_transform " + layers_text_ + " is set, and " + key + " has no layer index (PEFT then does not target it)";
          break;
        }
        long index = *first;
        if (*first != *last) {
          if (!first_index_) {
            r.v = verdict::undecided;  // which number is the layer depends on the PEFT version
            break;
          }
          index = *first_index_ ? *first : *last;
        }
        if (std::find(layers_.begin(), layers_.end(), index) == layers_.end()) {
          r.v = verdict::not_applied;
          r.why = "layers_to_transform " + layers_text_ + " leaves out layer " + std::to_string(index) + " of " + key;
        }
      }
      break;
  }
  // An exclude_modules regex std::regex cannot compile: only a name not targeted anyway is decided.
  if (!excluded && r.v == verdict::applied) r.v = verdict::undecided;
  return r;
}

std::string peft_targets::other(const std::string& module, bool router) const {
  result r = modules(module);
  if (r.v != verdict::not_applied) return "";
  if (parameter(module + ".weight")) return "";  // its weight is a target_parameters entry: a ParamWrapper
  if (router && !r.by_target) return "";         // transformers 5 may make it a parameter target
  if (r.by_target && !parameters_.empty()) r.why += ", nor does target_parameters " + parameters_text_ + " name " + module + ".weight";
  return r.why;
}

std::string peft_targets::per_expert(const std::string& module, const std::string& leaf, const std::string& param,
                                     const std::vector<std::string>& containers) const {
  result r = modules(module);
  if (r.v != verdict::not_applied) return "";
  // Into a transformers 5 model (fused experts) PEFT loads these factors into the fused
  // parameter's wrapper: targeted there by target_parameters, or by a target_modules entry naming
  // the leaf, which PEFT turns into a parameter target (exclude_modules and the layers then do
  // not apply), or by a regex matching "<experts module>.<leaf>" of some layer.
  if (parameter(param)) return "";
  if (target_ == kind::list &&
      std::any_of(target_list_.begin(), target_list_.end(), [&](const std::string& e) { return equal_or_dotted_suffix(e, leaf); }))
    return "";
  if (target_ == kind::regex) {
    auto it = leaf_probe_.find(leaf);
    if (it == leaf_probe_.end()) {
      bool any = !target_re_;
      for (const auto& c : containers)
        if (!any && std::regex_match(c + "." + leaf, *target_re_)) any = true;
      it = leaf_probe_.emplace(leaf, any).first;
    }
    if (it->second) return "";
  }
  if (r.by_target && !parameters_.empty()) r.why += ", nor does target_parameters " + parameters_text_ + " name " + param;
  return r.why;
}

}  // namespace moereg::lora_detail
