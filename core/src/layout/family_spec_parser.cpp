// SPDX-License-Identifier: Apache-2.0
// Parses plugin.yaml into the catalog's parts (family_parts.h), every problem with its
// file:line:column (the scalar readers are spec_reader.h's). family_parts_merge.cpp merges the
// parts (extends, variants) into a family_spec; family_spec.cpp holds the spec's own functions.
#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "moereg/base/error.h"
#include "moereg/base/strict_yaml.h"
#include "family_parts.h"
#include "spec_reader.h"
#include "moereg/layout/family_spec.h"

namespace moereg {

namespace {
bool valid_naming(const std::string& t) {
  std::size_t prefix = t.starts_with("{key}") ? 5 : t.starts_with("{stem}") ? 6 : 0;
  return prefix && t.find_first_of("{}", prefix) == std::string::npos;
}

// The sections of plugin.yaml, each read with spec_reader's scalar readers.
class parser : public detail::spec_reader {
 public:
  using spec_reader::spec_reader;

  std::optional<piece> piece_of(const std::string& s) {
    if (s == "gate") return piece::gate;
    if (s == "up") return piece::up;
    if (s == "down") return piece::down;
    return std::nullopt;
  }

  expert_entry entry(const std::string& name, const YAML::Node& n) {
    expert_entry e;
    e.name = name;
    e.at = loc(n);
    if (!n.IsMap()) {
      fail(n, "expert entry '" + name + "' must be a map with at least 'key'");
      return e;
    }
    allowed_keys(n, {"key", "fuse", "transpose", "stack"}, "expert entry '" + name + "'");
    if (!n["key"]) fail(n, "expert entry '" + name + "' needs a 'key' template");
    else e.key = tmpl(n["key"], "key");
    if (n["fuse"]) {
      bool unknown = false;
      for (const auto& p : str_list(n["fuse"], "fuse")) {
        auto pc = piece_of(p);
        if (!pc) fail(n["fuse"], "fuse lists '" + p + "', expected gate, up or down");
        else e.pieces.push_back(*pc);
        unknown |= !pc;
      }
      if (!unknown && e.pieces.size() < 2) fail(n["fuse"], "fuse needs at least two pieces, e.g. [gate, up]");
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

  layout_spec layout(const std::string& name, const YAML::Node& n, const YAML::Node& key) {
    layout_spec l;
    l.name = name;
    l.at = loc(key);  // the name: a block map's own mark is its first key's line
    if (!n.IsMap()) {
      fail(n, "layout '" + name + "' must be a map");
      return l;
    }
    allowed_keys(n, {"aliases", "description", "experts", "renames", "transforms", "squeezes", "splits", "drops", "config_file", "write_config_hook",
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
          rename_rule rr{tmpl(r["from"], "from"), tmpl(r["to"], "to"), loc(r)};
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
          l.transforms.push_back({tmpl(t["key"], "key"), str(t["hook"], "hook"), loc(t["hook"])});
        }
    }
    if (n["squeezes"]) {
      if (!n["squeezes"].IsSequence()) fail(n["squeezes"], "squeezes must be a list of {key: template, axis: n}");
      else
        for (const auto& q : n["squeezes"]) {
          allowed_keys(q, {"key", "axis"}, "squeeze");
          if (!q.IsMap() || !q["key"] || !q["axis"]) {
            fail(q, "a squeeze needs 'key' (this layout's name template) and 'axis' (the canonical axis of size 1 it drops)");
            continue;
          }
          const double axis = number(q["axis"], "axis");
          if (!(axis >= 0 && axis < 8) || static_cast<double>(static_cast<int>(axis)) != axis) {
            fail(q["axis"], "axis must be an integer from 0 to 7");
            continue;
          }
          l.squeezes.push_back({tmpl(q["key"], "key"), static_cast<int>(axis), loc(q)});
        }
    }
    if (const YAML::Node d = n["drops"]) {
      if (!d.IsSequence()) fail(d, "drops must be a list of canonical name templates");
      else
        for (const auto& x : d) l.drops.push_back(tmpl(x, "drops entry"));
    }
    if (n["splits"]) {
      if (!n["splits"].IsSequence()) fail(n["splits"], "splits must be a list of {canonical: template, heads: config, parts: [...]}");
      else
        for (const auto& sp : n["splits"]) split(sp, l.splits);
    }
    return l;
  }

  // One `splits` entry: a canonical tensor cut per head into parts (family_spec.h).
  void split(const YAML::Node& n, std::vector<tensor_split>& out) {
    allowed_keys(n, {"canonical", "heads", "parts"}, "split");
    if (!n.IsMap() || !n["canonical"] || !n["heads"] || !n["parts"]) {
      fail(n, "a split needs 'canonical' (name template), 'heads' (config field) and 'parts' (a list of {key, rows, transpose})");
      return;
    }
    tensor_split t{tmpl(n["canonical"], "canonical"), value(n["heads"], "heads"), {}, loc(n)};
    auto sorted = [](std::vector<std::string> v) {
      std::sort(v.begin(), v.end());
      return v;
    };
    if (!n["parts"].IsSequence() || n["parts"].size() < 2) {
      fail(n["parts"], "parts must list at least two {key, rows, transpose} entries");
      return;
    }
    for (const auto& p : n["parts"]) {
      allowed_keys(p, {"key", "rows", "transpose"}, "split part");
      if (!p.IsMap() || !p["key"] || !p["rows"]) {
        fail(p, "a split part needs 'key' (this layout's name template) and 'rows' (rows per head, a config field)");
        continue;
      }
      split_part part{tmpl(p["key"], "key"), value(p["rows"], "rows"), false, loc(p)};
      if (p["transpose"]) part.transpose = boolean(p["transpose"], "transpose");
      if (sorted(part.key.placeholders()) != sorted(t.canonical.placeholders()))
        fail(p["key"], "split part '" + part.key.text() + "' must use the placeholders of '" + t.canonical.text() + "'");
      t.parts.push_back(std::move(part));
    }
    out.push_back(std::move(t));
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
      q.at = loc(m);
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
    r.at = loc(n);
    r.declared = true;
    if (!n.IsMap()) {
      fail(n, "routing must be a map (scoring, logits, renormalize, scaling, groups)");
      return r;
    }
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
    if (n["renorm_eps"]) r.renorm_eps = number(n["renorm_eps"], "routing.renorm_eps");
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
          r.groups_when_field = str(w.begin()->first, "routing.groups.when field");
          r.groups_when_equals = str(w.begin()->second, "routing.groups.when value");
        }
      }
    }
    return r;
  }

  // gguf.tokenizer_pre: one name (every model_type of the plugin), or a list of
  // {pre: NAME, model_type: TYPE} where the model types differ (deepseek_v2 / deepseek_v3).
  void tokenizer_pre(const YAML::Node& n, detail::gguf_part& out) {
    static const char* expected = "gguf.tokenizer_pre must be llama.cpp's tokenizer.ggml.pre name (e.g. qwen2), or a list of {pre: NAME, model_type: TYPE}";
    auto name = [&](const YAML::Node& v) {
      std::string s = str(v, "gguf.tokenizer_pre");
      if (s.empty()) fail(v, "gguf.tokenizer_pre is empty; expected llama.cpp's pre-tokenizer name (e.g. qwen2)");
      return s;
    };
    if (n.IsScalar()) {
      out.tokenizer_pre_for.emplace_back(name(n), "");
      return;
    }
    if (!n.IsSequence()) {
      fail(n, expected);
      return;
    }
    for (const auto& e : n) {
      if (!e.IsMap()) {
        fail(e, expected);
        continue;
      }
      allowed_keys(e, {"pre", "model_type"}, "gguf.tokenizer_pre entry");
      if (!e["pre"]) fail(e, "a gguf.tokenizer_pre entry needs 'pre' (llama.cpp's tokenizer.ggml.pre name)");
      else out.tokenizer_pre_for.emplace_back(name(e["pre"]), e["model_type"] ? str(e["model_type"], "model_type") : "");
    }
  }

  detail::gguf_part gguf(const YAML::Node& n) {
    detail::gguf_part out;
    gguf_spec& g = out.spec;
    if (!n) return out;
    g.at = loc(n);
    if (!n.IsMap()) {
      fail(n, "gguf must be a map (architecture, model_types, metadata, f32, tokenizer_pre)");
      return out;
    }
    allowed_keys(n, {"architecture", "model_types", "metadata", "f32", "tokenizer_pre"}, "gguf");
    if (const YAML::Node tp = n["tokenizer_pre"]) tokenizer_pre(tp, out);
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
          allowed_keys(r, {"model_type", "when", "with_tensor"}, "gguf.model_types entry");
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
          if (r["with_tensor"]) rule.with_tensor = tmpl(r["with_tensor"], "with_tensor");
          g.model_types.push_back(std::move(rule));
        }
    }
    if (const YAML::Node md = n["metadata"]) {
      if (!md.IsSequence()) fail(md, "gguf.metadata must be a list of {key: ..., config: ... | value: ..., type: ...}");
      else
        for (const auto& e : md) {
          allowed_keys(e, {"key", "config", "value", "type", "length", "model_type", "sum", "product", "strings", "default", "default_fits", "absent", "missing",
                           "with_tensor", "when"},
                       "gguf.metadata entry");
          gguf_metadata_rule r;
          r.at = loc(e);
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
          r.product = str_list(e["product"], "product");
          r.strings = str_list(e["strings"], "strings");
          if (const YAML::Node d = e["default"]) {
            if (!d.IsSequence()) fail(d, "default must be a list of integers (for type i32_array)");
            else
              for (const auto& x : d) {
                const double v = number(x, "default item");
                if (std::floor(v) != v || v < -2147483648.0 || v > 2147483647.0) fail(x, "default items must be 32-bit integers");
                else r.array_default.push_back(static_cast<std::int64_t>(v));
              }
          }
          if (e["absent"]) {
            try {
              r.absent = e["absent"].as<double>();
            } catch (const YAML::Exception&) {
              fail(e["absent"], "absent must be a number");
            }
          }
          if (const YAML::Node m = e["missing"]) {
            try {
              r.missing = m.Scalar() == "true" ? 1.0 : m.Scalar() == "false" ? 0.0 : m.as<double>();
            } catch (const YAML::Exception&) {
              fail(m, "missing must be a number, true or false");
            }
          }
          if (e["with_tensor"]) r.with_tensor = tmpl(e["with_tensor"], "with_tensor");
          if (const YAML::Node w = e["when"]) {
            if (!w.IsMap()) fail(w, "when must map config.json fields to strings");
            else
              for (const auto& kv : w) r.when_config[kv.first.as<std::string>()] = str(kv.second, "when");
          }
          if (r.config.empty() + !r.value + r.sum.empty() + r.product.empty() != 3)
            fail(e, "gguf.metadata '" + r.key + "' needs exactly one of 'config', 'value', 'sum' and 'product'");
          if (e["type"]) r.type = str(e["type"], "type");
          static const std::set<std::string> types = {"u32", "i32", "u64", "f32", "f64", "bool", "i32_array", "bool_array"};
          if (!types.count(r.type))
            fail(e["type"], "type is '" + r.type + "', expected u32, i32, u64, f32, f64, bool, i32_array or bool_array");
          if (e["default"] && r.type != "i32_array") fail(e["default"], "default is for type i32_array");
          if (e["default_fits"]) {
            r.default_fits = str(e["default_fits"], "default_fits");
            if (!e["default"]) fail(e["default_fits"], "default_fits needs a 'default'");
          }
          if (r.type == "bool_array") {
            if (r.config.empty()) fail(e, "a bool_array entry takes its list from 'config'");
            if (r.strings.size() != 2 || r.strings[0] == r.strings[1])
              fail(e["strings"] ? e["strings"] : e, "a bool_array entry needs 'strings': the two config strings for false and true");
          } else if (e["strings"]) {
            fail(e["strings"], "strings is for type bool_array");
          }
          if (r.type == "i32_array") {
            const double len = e["length"] ? number(e["length"], "length") : 0;
            if (!(len >= 1 && len <= 64) || static_cast<double>(static_cast<std::size_t>(len)) != len)
              fail(e["length"] ? e["length"] : e, "an i32_array entry needs 'length', the item count written (1 to 64)");
            else r.length = static_cast<std::size_t>(len);
            if (r.config.empty()) fail(e, "an i32_array entry takes its list from 'config'");
          } else if (e["length"]) {
            fail(e["length"], "length is for type i32_array");
          }
          // Entries for another model_type of a multi-type plugin are dropped when resolving.
          out.metadata_for.push_back(e["model_type"] ? str(e["model_type"], "model_type") : "");
          g.metadata.push_back(std::move(r));
        }
    }
    return out;
  }

  // The engine keys of one map (the top level or a variant), each remembered with its place.
  detail::family_part part(const YAML::Node& root) {
    detail::family_part f;
    f.at = loc(root);
    auto field = [&](auto& out, const char* key) -> YAML::Node {
      YAML::Node n = root[key];
      if (n) {
        out.set = true;
        out.at = loc(n);
      }
      return n;
    };
    if (YAML::Node n = field(f.extends, "extends")) f.extends.value = str(n, "extends");
    if (YAML::Node d = field(f.dims, "dims")) {
      if (!d.IsMap()) fail(d, "dims must map symbols (E, H, I, K, ...) to config.json fields");
      else
        for (const auto& kv : d) {
          std::string sym = str(kv.first, "dims key");
          f.dims.value[sym] = value(kv.second, "dims." + sym);
        }
    }
    if (YAML::Node m = field(f.moe_layers, "moe_layers")) {
      allowed_keys(m, {"count", "sparse_step", "dense_layers", "first_dense", "extra"}, "moe_layers");
      moe_layer_rule& r = f.moe_layers.value;
      r.count = value(m["count"], "moe_layers.count");
      r.sparse_step = value(m["sparse_step"], "moe_layers.sparse_step");
      if (m["dense_layers"]) r.dense_layers = str(m["dense_layers"], "moe_layers.dense_layers");
      r.first_dense = value(m["first_dense"], "moe_layers.first_dense");
      r.extra = value(m["extra"], "moe_layers.extra");
      if (r.count.empty()) fail(m, "moe_layers needs 'count'");
    }
    if (YAML::Node b = field(f.moe_block, "moe_block")) {
      allowed_keys(b, {"router", "router_bias", "shared_gate_proj", "shared_up_proj", "shared_down_proj", "shared_gate"}, "moe_block");
      moe_block_spec& mb = f.moe_block.value;
      auto opt = [&](const char* k, key_template& out) {
        if (b[k]) out = tmpl(b[k], std::string("moe_block.") + k);
      };
      opt("router", mb.router);
      opt("router_bias", mb.router_bias);
      opt("shared_gate_proj", mb.shared_gate_proj);
      opt("shared_up_proj", mb.shared_up_proj);
      opt("shared_down_proj", mb.shared_down_proj);
      opt("shared_gate", mb.shared_gate);
    }
    if (YAML::Node p = field(f.passthrough, "passthrough")) {
      if (!p.IsSequence()) fail(p, "passthrough must be a list of canonical name templates");
      else
        for (const auto& x : p) f.passthrough.value.push_back(tmpl(x, "passthrough entry"));
    }
    if (YAML::Node n = field(f.reference_layout, "reference_layout")) f.reference_layout.value = str(n, "reference_layout");
    if (YAML::Node ls = field(f.layouts, "layouts")) {
      if (!ls.IsMap()) fail(ls, "layouts must map layout names to their declarations");
      else
        for (const auto& kv : ls) f.layouts.value.push_back(layout(str(kv.first, "layout name"), kv.second, kv.first));
    }
    if (YAML::Node n = field(f.routing, "routing")) f.routing.value = routing(n);
    if (YAML::Node n = field(f.quantization, "quantization")) quantization(n, f.quantization.value);
    if (YAML::Node n = field(f.gguf, "gguf")) f.gguf.value = gguf(n);
    return f;
  }

  detail::manifest_parts manifest(const YAML::Node& root) {
    detail::manifest_parts m;
    m.path = file_;
    m.root_at = loc(root);
    if (!root.IsMap()) {
      errors.push_back(file_ + ":1:1: plugin.yaml must be a map of keys");
      return m;
    }
    allowed_keys(root,
                 {"name", "version", "api_version", "description", "extends", "model_types", "library", "library_sha256",
                  "hooks", "native_config", "dims", "moe_layers", "moe_block", "passthrough", "layouts", "reference_layout",
                  "routing", "variants", "quantization", "gguf"},
                 "plugin.yaml");
    if (!root["name"]) errors.push_back(m.root_at.str() + ": missing 'name'");
    else {
      m.name = str(root["name"], "name");
      m.name_at = loc(root["name"]);
    }
    plugin_ = m.name;
    m.root_at.plugin = m.name;
    if (root["version"]) m.version = str(root["version"], "version");
    if (root["api_version"]) m.api_version = static_cast<int>(number(root["api_version"], "api_version"));
    if (root["description"]) m.description = str(root["description"], "description");
    m.model_types = str_list(root["model_types"], "model_types");
    if (root["library"]) {
      m.library = str(root["library"], "library");
      m.library_at = loc(root["library"]);
    }
    if (root["library_sha256"]) m.library_sha256 = str(root["library_sha256"], "library_sha256");
    m.hooks = str_list(root["hooks"], "hooks");
    m.hooks_at = root["hooks"] ? loc(root["hooks"]) : m.root_at;
    if (const YAML::Node nc = root["native_config"]) {
      m.native_config_at = loc(nc);
      allowed_keys(nc, {"file", "hook"}, "native_config");
      if (nc["file"]) m.native_config_file = str(nc["file"], "native_config.file");
      if (nc["hook"]) m.native_config_hook = str(nc["hook"], "native_config.hook");
      if (m.native_config_file.empty() || m.native_config_hook.empty()) fail(nc, "native_config needs 'file' and 'hook'");
    }
    m.base = part(root);
    if (const YAML::Node vs = root["variants"]) {
      if (!vs.IsMap()) fail(vs, "variants must map model_types to the keys that differ for them");
      else
        for (const auto& kv : vs) {
          std::string type = str(kv.first, "variant name");
          if (!kv.second.IsMap()) {
            fail(kv.second, "variant '" + type + "' must be a map of the keys that differ for it");
            continue;
          }
          allowed_keys(kv.second,
                       {"extends", "dims", "moe_layers", "moe_block", "passthrough", "layouts", "reference_layout", "routing",
                        "quantization", "gguf"},
                       "variant '" + type + "'");
          m.variants.emplace_back(type, part(kv.second));
        }
    }
    return m;
  }

};

}  // namespace

namespace detail {

manifest_parts parse_manifest(const YAML::Node& root, const std::string& path) {
  parser p(path, "");
  manifest_parts m;
  try {
    m = p.manifest(root);
  } catch (const YAML::Exception& e) {
    p.errors.push_back(yaml_where(path, e.mark) + ": " + e.msg);
  }
  m.path = path;
  m.errors = std::move(p.errors);
  return m;
}

}  // namespace detail

}  // namespace moereg
