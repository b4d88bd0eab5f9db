// Parses plugin.yaml into a family_spec, collecting every problem with its file:line.
#include <algorithm>
#include <set>
#include <sstream>

#include "moereg/base/error.h"
#include "moereg/layout/family_spec.h"

namespace moereg {

const char* piece_name(piece p) {
  switch (p) {
    case piece::gate: return "gate";
    case piece::up: return "up";
    case piece::down: return "down";
  }
  return "?";
}

const layout_spec* family_spec::find_layout(const std::string& n) const {
  for (const auto& l : layouts) {
    if (l.name == n) return &l;
    for (const auto& a : l.aliases)
      if (a == n) return &l;
  }
  return nullptr;
}

std::vector<std::string> family_spec::layout_names() const {
  std::vector<std::string> out;
  for (const auto& l : layouts) out.push_back(l.name);
  return out;
}

std::optional<double> resolve_value(const config_value& v, const json::value& config) {
  for (const auto& f : v.fields) {
    const json::value* x = config.find_path(f);
    if (!x || x->is_null()) continue;
    if (x->is_bool()) return x->as_bool() ? 1.0 : 0.0;
    if (x->is_number()) return x->as_double();
  }
  return v.fallback;
}

namespace {

// The names the quantizers themselves write: transformers' FineGrainedFP8 (and DeepSeek),
// AutoGPTQ, compressed-tensors, and MXFP4 as DeepSeek-V4 stores it (FORMATS.md section 5).
std::map<std::string, quant_naming> default_quant_naming() {
  std::map<std::string, quant_naming> m;
  m["fp8"].scale = {"{key}_scale_inv", "{key}_scale"};
  m["mxfp4"].scale = {"{stem}.scale"};
  quant_naming& g = m["gptq"];
  g.weight = "{stem}.qweight";
  g.scale = {"{stem}.scales"};
  g.g_idx = "{stem}.g_idx";
  g.zeros = "{stem}.qzeros";
  quant_naming& c = m["compressed"];
  c.weight = "{stem}.weight_packed";
  c.scale = {"{stem}.weight_scale"};
  c.shape = "{stem}.weight_shape";
  c.zeros = "{stem}.weight_zero_point";
  return m;
}

bool valid_naming(const std::string& t) {
  std::size_t prefix = t.starts_with("{key}") ? 5 : t.starts_with("{stem}") ? 6 : 0;
  return prefix && t.find_first_of("{}", prefix) == std::string::npos;
}

class parser {
 public:
  parser(std::string file) : file_(std::move(file)) {}
  std::vector<std::string> errors;

  std::string at(const YAML::Node& n) const {
    return file_ + ":" + std::to_string(n.Mark().line + 1);
  }
  void fail(const YAML::Node& n, const std::string& what) { errors.push_back(at(n) + ": " + what); }

  // Unknown keys are typos until proven otherwise.
  void allowed_keys(const YAML::Node& map, const std::set<std::string>& keys, const std::string& where) {
    if (!map.IsMap()) return;
    for (const auto& kv : map) {
      std::string k = kv.first.as<std::string>();
      if (!keys.count(k)) {
        std::string list;
        for (const auto& a : keys) list += (list.empty() ? "" : ", ") + a;
        fail(kv.first, "unknown key '" + k + "' in " + where + ", expected one of: " + list);
      }
    }
  }

  std::string str(const YAML::Node& n, const std::string& what) {
    if (!n.IsScalar()) {
      fail(n, what + " must be a string");
      return {};
    }
    return n.as<std::string>();
  }

  bool boolean(const YAML::Node& n, const std::string& what) {
    try {
      return n.as<bool>();
    } catch (const YAML::Exception&) {
      fail(n, what + " must be true or false");
      return false;
    }
  }

  std::vector<std::string> str_list(const YAML::Node& n, const std::string& what) {
    std::vector<std::string> out;
    if (!n) return out;
    if (n.IsScalar()) return {n.as<std::string>()};
    if (!n.IsSequence()) {
      fail(n, what + " must be a string or a list of strings");
      return out;
    }
    for (const auto& x : n) out.push_back(str(x, what + " entry"));
    return out;
  }

  key_template tmpl(const YAML::Node& n, const std::string& what) {
    std::string s = str(n, what);
    try {
      return key_template(s, at(n));
    } catch (const error& e) {
      errors.push_back(e.what());
      return {};
    }
  }

  // A number or boolean: literal, config field name(s), or {config: ..., default: ...}.
  config_value value(const YAML::Node& n, const std::string& what) {
    config_value v;
    if (!n) return v;
    if (n.IsScalar()) {
      std::string s = n.as<std::string>();
      if (s == "true" || s == "false") v.fallback = s == "true" ? 1 : 0;
      else {
        try {
          std::size_t used = 0;
          double d = std::stod(s, &used);
          if (used == s.size()) v.fallback = d;
          else v.fields = {s};
        } catch (...) {
          v.fields = {s};
        }
      }
      return v;
    }
    if (n.IsSequence()) {
      v.fields = str_list(n, what);
      return v;
    }
    if (n.IsMap()) {
      allowed_keys(n, {"config", "default"}, what);
      v.fields = str_list(n["config"], what + ".config");
      if (n["default"]) {
        std::string d = n["default"].as<std::string>();
        if (d == "true" || d == "false") v.fallback = d == "true" ? 1 : 0;
        else {
          try {
            v.fallback = n["default"].as<double>();
          } catch (...) {
            fail(n["default"], what + ".default must be a number or boolean");
          }
        }
      }
      return v;
    }
    fail(n, what + " must be a number, a config field, or {config: ..., default: ...}");
    return v;
  }

  std::optional<piece> piece_of(const std::string& s) {
    if (s == "gate") return piece::gate;
    if (s == "up") return piece::up;
    if (s == "down") return piece::down;
    return std::nullopt;
  }

  expert_entry entry(const std::string& name, const YAML::Node& n) {
    expert_entry e;
    e.name = name;
    e.line = n.Mark().line + 1;
    if (!n.IsMap()) {
      fail(n, "expert entry '" + name + "' must be a map with at least 'key'");
      return e;
    }
    allowed_keys(n, {"key", "fuse", "transpose", "stack"}, "expert entry '" + name + "'");
    if (!n["key"]) fail(n, "expert entry '" + name + "' needs a 'key' template");
    else e.key = tmpl(n["key"], "key");
    if (n["fuse"]) {
      for (const auto& p : str_list(n["fuse"], "fuse")) {
        auto pc = piece_of(p);
        if (!pc) fail(n["fuse"], "fuse lists '" + p + "', expected gate, up or down");
        else e.pieces.push_back(*pc);
      }
      if (e.pieces.size() < 2) fail(n["fuse"], "fuse needs at least two pieces, e.g. [gate, up]");
    } else if (auto pc = piece_of(name)) {
      e.pieces = {*pc};
    } else {
      fail(n, "expert entry '" + name + "' is not a piece name (gate, up, down); add fuse: [..] to say what it holds");
    }
    if (n["transpose"]) e.transpose = boolean(n["transpose"], "transpose");
    if (!e.key.empty()) {
      if (!e.key.has("layer")) fail(n["key"], "key '" + e.key.text() + "' needs a {layer} placeholder");
      e.stacked = !e.key.has("expert");
      if (n["stack"] && boolean(n["stack"], "stack") != e.stacked)
        fail(n["stack"], std::string("stack: ") + (e.stacked ? "false" : "true") + " contradicts the key '" + e.key.text() +
                             "' (a key with {expert} is one tensor per expert; without it, axis 0 is the expert)");
      for (const auto& ph : e.key.placeholders())
        if (ph != "layer" && ph != "expert")
          fail(n["key"], "key '" + e.key.text() + "' has {" + ph + "}, expected only {layer} and {expert}");
    }
    return e;
  }

  layout_spec layout(const std::string& name, const YAML::Node& n) {
    layout_spec l;
    l.name = name;
    l.defined_in = file_;
    l.line = n.Mark().line + 1;
    if (!n.IsMap()) {
      fail(n, "layout '" + name + "' must be a map");
      return l;
    }
    allowed_keys(n, {"aliases", "description", "experts", "renames", "transforms", "config_file", "write_config_hook",
                     "file_stem", "container", "override", "squeeze_expert_scales"},
                 "layout '" + name + "'");
    l.aliases = str_list(n["aliases"], "aliases");
    if (n["description"]) l.description = str(n["description"], "description");
    if (n["config_file"]) l.config_file = str(n["config_file"], "config_file");
    if (n["write_config_hook"]) l.write_config_hook = str(n["write_config_hook"], "write_config_hook");
    if (n["file_stem"]) l.file_stem = str(n["file_stem"], "file_stem");
    if (n["squeeze_expert_scales"]) l.squeeze_expert_scales = boolean(n["squeeze_expert_scales"], "squeeze_expert_scales");
    if (n["container"]) {
      l.container = str(n["container"], "container");
      if (l.container != "safetensors" && l.container != "gguf")
        fail(n["container"], "container is '" + l.container + "', expected safetensors or gguf");
    }
    const YAML::Node ex = n["experts"];
    if (!ex || !ex.IsMap() || ex.size() == 0) {
      fail(n, "layout '" + name + "' needs an 'experts' map (gate/up/down entries)");
    } else {
      std::set<piece> seen;
      for (const auto& kv : ex) {
        expert_entry e = entry(kv.first.as<std::string>(), kv.second);
        for (piece p : e.pieces)
          if (!seen.insert(p).second) fail(kv.second, std::string("piece '") + piece_name(p) + "' is stored twice in layout '" + name + "'");
        l.experts.push_back(std::move(e));
      }
      for (piece p : {piece::gate, piece::up, piece::down})
        if (!seen.count(p)) fail(ex, "layout '" + name + "' does not say where piece '" + piece_name(p) + "' is stored");
    }
    if (n["renames"]) {
      if (!n["renames"].IsSequence()) fail(n["renames"], "renames must be a list of {from: canonical, to: renamed}");
      else
        for (const auto& r : n["renames"]) {
          allowed_keys(r, {"from", "to"}, "rename");
          if (!r["from"] || !r["to"]) {
            fail(r, "a rename needs 'from' (canonical name template) and 'to' (this layout's name template)");
            continue;
          }
          rename_rule rr{tmpl(r["from"], "from"), tmpl(r["to"], "to"), r.Mark().line + 1};
          auto a = rr.canonical.placeholders(), b = rr.renamed.placeholders();
          std::sort(a.begin(), a.end());
          std::sort(b.begin(), b.end());
          if (a != b) fail(r, "rename '" + rr.canonical.text() + "' -> '" + rr.renamed.text() + "' must use the same placeholders on both sides");
          l.renames.push_back(std::move(rr));
        }
    }
    if (n["transforms"]) {
      if (!n["transforms"].IsSequence()) fail(n["transforms"], "transforms must be a list of {key: template, hook: name}");
      else
        for (const auto& t : n["transforms"]) {
          allowed_keys(t, {"key", "hook"}, "transform");
          if (!t["key"] || !t["hook"]) {
            fail(t, "a transform needs 'key' and 'hook'");
            continue;
          }
          l.transforms.push_back({tmpl(t["key"], "key"), str(t["hook"], "hook"), t.Mark().line + 1});
        }
    }
    return l;
  }

  // "{key}<suffix>" or "{stem}<suffix>", nothing else: such a name reverses exactly.
  std::string naming_template(const YAML::Node& n, const std::string& what) {
    std::string t = str(n, what);
    if (!valid_naming(t))
      fail(n, what + " is '" + t + "', expected {key} or {stem} followed by literal text (e.g. \"{key}_scale_inv\", \"{stem}.qweight\")");
    return t;
  }

  void quantization(const YAML::Node& n, std::map<std::string, quant_naming>& out) {
    if (!n) return;
    if (!n.IsMap()) {
      fail(n, "quantization must map schemes (fp8, mxfp4, gptq, compressed) to their tensor naming");
      return;
    }
    allowed_keys(n, {"fp8", "mxfp4", "gptq", "compressed"}, "quantization");
    for (const auto& kv : n) {
      std::string scheme = kv.first.as<std::string>();
      const YAML::Node& m = kv.second;
      std::string where = "quantization." + scheme;
      if (!m.IsMap()) {
        fail(m, where + " must be a map (weight, scale, g_idx, zeros, shape)");
        continue;
      }
      allowed_keys(m, {"weight", "scale", "g_idx", "zeros", "shape"}, where);
      quant_naming q;
      q.line = m.Mark().line + 1;
      if (m["weight"]) q.weight = naming_template(m["weight"], where + ".weight");
      for (const auto& s : str_list(m["scale"], where + ".scale")) {
        q.scale.push_back(s);
        if (!valid_naming(s)) fail(m["scale"], where + ".scale '" + s + "': expected {key} or {stem} followed by literal text");
      }
      if (q.scale.empty()) fail(m, where + " needs 'scale' (the scale tensor's name template)");
      if (m["g_idx"]) q.g_idx = naming_template(m["g_idx"], where + ".g_idx");
      if (m["zeros"]) q.zeros = naming_template(m["zeros"], where + ".zeros");
      if (m["shape"]) q.shape = naming_template(m["shape"], where + ".shape");
      out[scheme] = std::move(q);
    }
  }

  routing_spec routing(const YAML::Node& n) {
    routing_spec r;
    if (!n) return r;
    r.line = n.Mark().line + 1;
    allowed_keys(n, {"scoring", "logits", "renormalize", "renorm_eps", "scaling", "groups"}, "routing");
    if (n["scoring"]) {
      r.scoring = str(n["scoring"], "routing.scoring");
      if (r.scoring != "softmax" && r.scoring != "sigmoid") fail(n["scoring"], "routing.scoring is '" + r.scoring + "', expected softmax or sigmoid");
    }
    if (n["logits"]) {
      std::string l = str(n["logits"], "routing.logits");
      if (l != "f32" && l != "activation") fail(n["logits"], "routing.logits is '" + l + "', expected f32 or activation");
      r.logits_in_f32 = l == "f32";
    }
    r.renormalize = value(n["renormalize"], "routing.renormalize");
    if (n["renorm_eps"]) r.renorm_eps = n["renorm_eps"].as<double>();
    r.scaling = value(n["scaling"], "routing.scaling");
    if (const YAML::Node g = n["groups"]) {
      allowed_keys(g, {"n_group", "topk_group", "score", "when"}, "routing.groups");
      r.n_group = value(g["n_group"], "routing.groups.n_group");
      r.topk_group = value(g["topk_group"], "routing.groups.topk_group");
      r.group_score = g["score"] ? str(g["score"], "routing.groups.score") : "max";
      if (r.group_score != "max" && r.group_score != "top2_sum")
        fail(g["score"], "routing.groups.score is '" + r.group_score + "', expected max or top2_sum");
      if (const YAML::Node w = g["when"]) {
        if (!w.IsMap() || w.size() != 1) fail(w, "routing.groups.when must be one {config_field: value}");
        else {
          r.groups_when_field = w.begin()->first.as<std::string>();
          r.groups_when_equals = w.begin()->second.as<std::string>();
        }
      }
    }
    return r;
  }

  gguf_spec gguf(const YAML::Node& n, const std::string& model_type) {
    gguf_spec g;
    if (!n) return g;
    g.line = n.Mark().line + 1;
    allowed_keys(n, {"architecture", "model_types", "metadata", "f32"}, "gguf");
    if (const YAML::Node f = n["f32"])
      for (const auto& name : str_list(f, "gguf.f32")) {
        try {
          g.f32_tensors.emplace_back(name, at(f));
        } catch (const error& e) {
          errors.push_back(e.what());
        }
      }
    if (!n["architecture"]) fail(n, "gguf needs 'architecture' (general.architecture, e.g. qwen3moe)");
    else g.architecture = str(n["architecture"], "gguf.architecture");
    if (const YAML::Node mt = n["model_types"]) {
      if (!mt.IsSequence()) fail(mt, "gguf.model_types must be a list of {model_type: ..., when: {key: value}}");
      else
        for (const auto& r : mt) {
          allowed_keys(r, {"model_type", "when"}, "gguf.model_types entry");
          gguf_spec::model_type_rule rule;
          if (!r["model_type"]) fail(r, "a gguf.model_types entry needs 'model_type'");
          else rule.model_type = str(r["model_type"], "model_type");
          if (const YAML::Node w = r["when"]) {
            if (!w.IsMap()) fail(w, "when must map metadata keys (without the arch prefix) to numbers");
            else
              for (const auto& kv : w) {
                try {
                  rule.when[kv.first.as<std::string>()] = kv.second.as<double>();
                } catch (const YAML::Exception&) {
                  fail(kv.second, "when." + kv.first.as<std::string>() + " must be a number");
                }
              }
          }
          g.model_types.push_back(std::move(rule));
        }
    }
    if (const YAML::Node md = n["metadata"]) {
      if (!md.IsSequence()) fail(md, "gguf.metadata must be a list of {key: ..., config: ... | value: ..., type: ...}");
      else
        for (const auto& e : md) {
          allowed_keys(e, {"key", "config", "value", "type", "model_type", "sum", "absent", "with_tensor", "when"}, "gguf.metadata entry");
          gguf_metadata_rule r;
          r.line = e.Mark().line + 1;
          if (!e["key"]) fail(e, "a gguf.metadata entry needs 'key' (without the arch prefix, e.g. expert_count)");
          else r.key = str(e["key"], "key");
          r.config = str_list(e["config"], "config");
          if (e["value"]) {
            try {
              r.value = e["value"].as<double>();
            } catch (const YAML::Exception&) {
              fail(e["value"], "value must be a number");
            }
          }
          r.sum = str_list(e["sum"], "sum");
          if (e["absent"]) {
            try {
              r.absent = e["absent"].as<double>();
            } catch (const YAML::Exception&) {
              fail(e["absent"], "absent must be a number");
            }
          }
          if (e["with_tensor"]) r.with_tensor = tmpl(e["with_tensor"], "with_tensor");
          if (const YAML::Node w = e["when"]) {
            if (!w.IsMap()) fail(w, "when must map config.json fields to strings");
            else
              for (const auto& kv : w) r.when_config[kv.first.as<std::string>()] = str(kv.second, "when");
          }
          if (r.config.empty() + !r.value + r.sum.empty() != 2)
            fail(e, "gguf.metadata '" + r.key + "' needs exactly one of 'config', 'value' and 'sum'");
          if (e["type"]) r.type = str(e["type"], "type");
          static const std::set<std::string> types = {"u32", "i32", "u64", "f32", "f64", "bool"};
          if (!types.count(r.type)) fail(e["type"], "type is '" + r.type + "', expected u32, i32, u64, f32, f64 or bool");
          // Entries for another model_type of a multi-type plugin are dropped here.
          if (e["model_type"] && !model_type.empty() && str(e["model_type"], "model_type") != model_type) continue;
          g.metadata.push_back(std::move(r));
        }
    }
    return g;
  }

  family_spec family(const YAML::Node& root, const std::string& model_type) {
    family_spec f;
    f.manifest_path = file_;
    f.model_type = model_type;
    if (!root.IsMap()) {
      errors.push_back(file_ + ":1: plugin.yaml must be a map of keys");
      return f;
    }
    allowed_keys(root,
                 {"name", "version", "api_version", "description", "extends", "model_types", "library", "library_sha256",
                  "hooks", "native_config", "dims", "moe_layers", "moe_block", "passthrough", "layouts", "reference_layout",
                  "routing", "variants", "quantization", "gguf"},
                 "plugin.yaml");
    if (!root["name"]) errors.push_back(file_ + ":1: missing 'name'");
    else f.name = str(root["name"], "name");
    if (root["version"]) f.version = str(root["version"], "version");
    if (root["api_version"]) f.api_version = root["api_version"].as<int>();
    if (root["description"]) f.description = str(root["description"], "description");
    f.model_types = str_list(root["model_types"], "model_types");
    if (root["library"]) f.library = str(root["library"], "library");
    f.hooks = str_list(root["hooks"], "hooks");
    if (const YAML::Node nc = root["native_config"]) {
      allowed_keys(nc, {"file", "hook"}, "native_config");
      if (nc["file"]) f.native_config_file = str(nc["file"], "native_config.file");
      if (nc["hook"]) f.native_config_hook = str(nc["hook"], "native_config.hook");
      if (f.native_config_file.empty() || f.native_config_hook.empty()) fail(nc, "native_config needs 'file' and 'hook'");
    }
    if (const YAML::Node d = root["dims"]) {
      if (!d.IsMap()) fail(d, "dims must map symbols (E, H, I, K, ...) to config.json fields");
      else
        for (const auto& kv : d) f.dims[kv.first.as<std::string>()] = value(kv.second, "dims." + kv.first.as<std::string>());
    }
    for (const char* need : {"E", "H", "I"})
      if (!f.dims.count(need)) errors.push_back(file_ + ":1: dims needs '" + need + "' (a config.json field)");
    if (const YAML::Node m = root["moe_layers"]) {
      allowed_keys(m, {"count", "sparse_step", "dense_layers", "first_dense", "extra"}, "moe_layers");
      f.moe_layers.count = value(m["count"], "moe_layers.count");
      f.moe_layers.sparse_step = value(m["sparse_step"], "moe_layers.sparse_step");
      if (m["dense_layers"]) f.moe_layers.dense_layers = str(m["dense_layers"], "moe_layers.dense_layers");
      f.moe_layers.first_dense = value(m["first_dense"], "moe_layers.first_dense");
      f.moe_layers.extra = value(m["extra"], "moe_layers.extra");
    } else {
      errors.push_back(file_ + ":1: missing 'moe_layers' (at least count: <config field of the layer count>)");
    }
    if (f.moe_layers.count.empty() && root["moe_layers"]) fail(root["moe_layers"], "moe_layers needs 'count'");
    if (const YAML::Node b = root["moe_block"]) {
      allowed_keys(b, {"router", "router_bias", "shared_gate_proj", "shared_up_proj", "shared_down_proj", "shared_gate"}, "moe_block");
      auto opt = [&](const char* k, key_template& out) {
        if (b[k]) out = tmpl(b[k], std::string("moe_block.") + k);
      };
      opt("router", f.moe_block.router);
      opt("router_bias", f.moe_block.router_bias);
      opt("shared_gate_proj", f.moe_block.shared_gate_proj);
      opt("shared_up_proj", f.moe_block.shared_up_proj);
      opt("shared_down_proj", f.moe_block.shared_down_proj);
      opt("shared_gate", f.moe_block.shared_gate);
    }
    if (const YAML::Node p = root["passthrough"]) {
      if (!p.IsSequence()) fail(p, "passthrough must be a list of canonical name templates");
      else
        for (const auto& x : p) f.passthrough.push_back(tmpl(x, "passthrough entry"));
    }
    if (root["reference_layout"]) f.reference_layout = str(root["reference_layout"], "reference_layout");
    if (const YAML::Node ls = root["layouts"]) {
      if (!ls.IsMap()) fail(ls, "layouts must map layout names to their declarations");
      else
        for (const auto& kv : ls) f.layouts.push_back(layout(kv.first.as<std::string>(), kv.second));
    } else {
      errors.push_back(file_ + ":1: missing 'layouts'");
    }
    std::set<std::string> names;
    for (const auto& l : f.layouts) {
      if (!names.insert(l.name).second) errors.push_back(file_ + ":" + std::to_string(l.line) + ": layout '" + l.name + "' declared twice");
      for (const auto& a : l.aliases)
        if (!names.insert(a).second) errors.push_back(file_ + ":" + std::to_string(l.line) + ": layout name '" + a + "' used twice");
    }
    if (!f.layouts.empty() && !f.find_layout(f.reference_layout))
      errors.push_back(file_ + ":1: reference_layout '" + f.reference_layout + "' is not one of the layouts");
    f.routing = routing(root["routing"]);
    f.quantization = default_quant_naming();
    quantization(root["quantization"], f.quantization);
    f.gguf = gguf(root["gguf"], model_type);
    for (const auto& l : f.layouts)
      if (l.container == "gguf" && f.gguf.architecture.empty())
        errors.push_back(file_ + ":" + std::to_string(l.line) + ": layout '" + l.name +
                         "' writes a .gguf (container: gguf), so the plugin needs a 'gguf' section (architecture, metadata)");
    // Every hook named anywhere must be in the hooks list, so the library can be checked.
    std::set<std::string> declared(f.hooks.begin(), f.hooks.end());
    auto need_hook = [&](const std::string& h, int line) {
      if (!h.empty() && !declared.count(h))
        errors.push_back(file_ + ":" + std::to_string(line) + ": hook '" + h + "' is used but not listed under 'hooks'");
    };
    need_hook(f.native_config_hook, 1);
    for (const auto& l : f.layouts) {
      need_hook(l.write_config_hook, l.line);
      for (const auto& t : l.transforms) need_hook(t.hook, t.line);
    }
    if (!f.hooks.empty() && f.library.empty()) errors.push_back(file_ + ":1: 'hooks' are listed but no 'library' provides them");
    return f;
  }

 private:
  std::string file_;
};

}  // namespace

family_spec parse_family_spec(const YAML::Node& root, const std::string& manifest_path, const std::string& model_type) {
  parser p(manifest_path);
  family_spec f = p.family(root, model_type);
  if (!p.errors.empty()) {
    std::string msg = "invalid plugin manifest:";
    for (const auto& e : p.errors) msg += "\n  " + e;
    throw error(msg);
  }
  return f;
}

std::vector<std::string> check_family_manifest(const YAML::Node& root, const std::string& yaml_path) {
  // The node is complete here: extends and variants were resolved by the catalog.
  parser p(yaml_path);
  YAML::Node copy = YAML::Clone(root);
  if (copy.IsMap() && copy["variants"]) copy.remove("variants");
  if (copy.IsMap() && copy["extends"]) copy.remove("extends");
  p.family(copy, "");
  std::sort(p.errors.begin(), p.errors.end());
  p.errors.erase(std::unique(p.errors.begin(), p.errors.end()), p.errors.end());
  return p.errors;
}

}  // namespace moereg
