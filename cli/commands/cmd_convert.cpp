// moereg convert CKPT OUT --to LAYOUT: any layout of a family to any other, streaming.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "command.h"
#include "model_session.h"
#include "moereg/base/error.h"
#include "moereg/base/log.h"
#include "moereg/checkpoint/resume_log.h"
#include "moereg/checkpoint/summary.h"
#include "moereg/gguf/gguf_family.h"
#include "moereg/gguf/gguf_output.h"
#include "plugin_options.h"
#include "progress.h"

namespace fs = std::filesystem;

namespace moereg::cli {

namespace {

std::uint64_t parse_size(const std::string& s) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (...) {
    throw usage_error("--shard-size '" + s + "': expected a size like 5GB, 500MB, 2GiB or a byte count");
  }
  std::string unit = s.substr(used);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  double mult = 1;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KB") mult = 1e3;
  else if (unit == "MB") mult = 1e6;
  else if (unit == "GB") mult = 1e9;
  else if (unit == "TB") mult = 1e12;
  else if (unit == "KIB") mult = 1024.0;
  else if (unit == "MIB") mult = 1024.0 * 1024;
  else if (unit == "GIB") mult = 1024.0 * 1024 * 1024;
  else throw usage_error("--shard-size '" + s + "': unknown unit '" + unit + "', expected B, KB, MB, GB, KiB, MiB or GiB");
  if (v < 0) throw usage_error("--shard-size must not be negative");
  return static_cast<std::uint64_t>(v * mult);
}

std::pair<std::int64_t, std::int64_t> parse_range(const std::string& s) {
  auto colon = s.find(':');
  try {
    if (colon == std::string::npos) throw std::invalid_argument("no colon");
    return {std::stoll(s.substr(0, colon)), std::stoll(s.substr(colon + 1))};
  } catch (const std::exception&) {
    throw usage_error("--experts '" + s + "': expected A:B, the experts A..B-1 of every layer");
  }
}

// A recipe's keys fill the options the command line left unset.
void apply_recipe(const std::string& path, std::map<std::string, std::string>& opts) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    throw error(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root.IsMap()) throw error(path + ":1: a recipe is a map of keys (source, output, to, ...)");
  static const std::set<std::string> keys = {"description", "source", "output", "to", "from", "family",
                                             "shard_size", "threads", "experts", "dry_run", "dtype"};
  for (const auto& kv : root) {
    std::string k = kv.first.as<std::string>();
    if (!keys.count(k)) {
      std::string list;
      for (const auto& x : keys) list += (list.empty() ? "" : ", ") + x;
      throw error(path + ":" + std::to_string(kv.first.Mark().line + 1) + ": unknown key '" + k + "', expected one of: " + list);
    }
    if (k == "description") continue;
    if (!kv.second.IsScalar())
      throw error(path + ":" + std::to_string(kv.second.Mark().line + 1) + ": '" + k + "' must be a single value");
    if (!opts.count(k)) opts[k] = kv.second.as<std::string>();
  }
}

const char* aux_files[] = {"generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja", "preprocessor_config.json"};

}  // namespace

int run_convert(const std::vector<std::string>& args, global_options& globals) {
  command_parser p(
      "convert CKPT OUT --to LAYOUT [options]",
      "Convert a checkpoint from one layout of its family to another, both directions, bit-exact.\n"
      "The family comes from config.json (model_type) and the source layout from the tensor names and\n"
      "shapes; where two layouts cannot be told apart from the files, moereg asks for --from.\n"
      "Tensors stream from the mapped source files to OUT (created; must not exist or be empty) in\n"
      "bounded memory. Layouts: hf, hf_split, transformers_v5, transformers_v4, grouped, gguf (a real\n"
      "GGUF file, OUT/model.gguf, llama.cpp names and metadata), mistral - those the family declares\n"
      "(moereg plugins show FAMILY). CKPT may also be a .gguf file (docs/gguf.md).");
  p.options().add_options()("checkpoint", po::value<std::string>(), "source checkpoint: directory, .safetensors or .gguf file")(
      "out", po::value<std::string>(), "output directory")(
      "to", po::value<std::string>(), "target layout")(
      "from", po::value<std::string>(), "source layout (default: detected from the tensors)")(
      "family", po::value<std::string>(), "family plugin or model_type (default: config.json model_type)")(
      "dry-run", po::bool_switch(), "print the plan (each output tensor and where its bytes come from) and check everything; write nothing")(
      "threads", po::value<int>(), "threads (default: all cores)")(
      "shard-size", po::value<std::string>(), "cut output shards at this size (5GB, 500MB, 2GiB; 0 = one file); default 5GB, as transformers saves")(
      "experts", po::value<std::string>(), "A:B - write only experts A..B-1 of every layer (expert-parallel loading)")(
      "resume", po::bool_switch(), "continue an interrupted conversion into OUT: shards completed earlier (checked by size and checksum) are kept, the rest redone")(
      "dtype", po::value<std::string>(), "bf16: dequantize quantized weights (FP8, MXFP4, GPTQ/compressed int4) to bf16, rounding once to nearest even; scales and quantization_config are dropped")(
      "config", po::value<std::string>(), "a recipe (YAML: source, output, to, from, family, shard_size, threads, experts, dtype)");
  add_plugin_options(p.options());
  p.positional("checkpoint", 1).positional("out", 1);
  auto vm = p.parse(args, globals);

  std::map<std::string, std::string> o;
  auto take = [&](const char* opt, const char* key) {
    if (vm.count(opt)) o[key] = vm[opt].as<std::string>();
  };
  take("checkpoint", "source");
  take("out", "output");
  take("to", "to");
  take("from", "from");
  take("family", "family");
  take("shard-size", "shard_size");
  take("experts", "experts");
  take("dtype", "dtype");
  if (vm.count("threads")) o["threads"] = std::to_string(vm["threads"].as<int>());
  if (vm["dry-run"].as<bool>()) o["dry_run"] = "true";
  if (vm.count("config")) apply_recipe(vm["config"].as<std::string>(), o);
  for (const char* need : {"source", "to"})
    if (!o.count(need)) throw usage_error(std::string("convert needs ") + (std::string(need) == "to" ? "--to LAYOUT" : "CKPT") + " (see moereg convert --help)");
  bool dry = o.count("dry_run") && (o["dry_run"] == "true" || o["dry_run"] == "1");
  if (!dry && !o.count("output")) throw usage_error("convert needs OUT, the output directory (see moereg convert --help)");

  double t0 = now_seconds();
  session_request req{o["source"], o.count("family") ? o["family"] : "", o.count("from") ? o["from"] : "", o["to"]};
  model_session s = open_model(req, vm);
  const layout_spec* target = s.spec.find_layout(o["to"]);
  decoded_checkpoint src = decode_checkpoint(*s.ckpt, s.spec, *s.layout, s.dims);
  plan_options po_;
  if (o.count("experts")) po_.experts = parse_range(o["experts"]);
  if (o.count("dtype")) {
    if (o["dtype"] != "bf16") throw usage_error("--dtype '" + o["dtype"] + "': expected bf16 (dequantize quantized weights)");
    po_.dequantize = true;
  }
  conversion_plan plan = plan_conversion(src, *target, po_);
  double t_plan = now_seconds() - t0;
  spdlog::info("{}: family {} ({}), layout {} -> {}; {} tensors, {} ({} planned in {:.3f}s)", o["source"], s.spec.name,
               s.model_type, s.layout->name, target->name, plan.outputs.size(), human_bytes(plan.total_bytes),
               s.dims.describe(), t_plan);

  // A layout with container: gguf is written as one .gguf (OUT/<stem>.gguf, config.json beside it).
  const bool to_gguf = target->container == "gguf";
  std::vector<tensor_spec> specs;
  for (const auto& t : plan.outputs) specs.push_back(t.spec);
  gguf_metadata gguf_md;
  if (to_gguf) {
    if (o.count("shard_size")) throw usage_error("--shard-size: layout '" + target->name + "' writes one .gguf file, which is not sharded");
    std::vector<std::string> problems = gguf_output_problems(specs);
    if (!problems.empty()) {
      std::string msg = "the conversion to layout '" + target->name + "' (a .gguf file) is not possible:";
      for (const auto& p_ : problems) msg += "\n  " + p_;
      throw error(msg);
    }
    gguf_md = gguf_output_metadata(s.spec, s.ckpt->config(), s.ckpt->config_path(), s.ckpt->gguf(), specs);
  }

  if (dry) {
    if (globals.json) {
      json::array outs;
      for (const auto& t : plan.outputs) {
        json::array shape;
        for (auto d : t.spec.shape) shape.emplace_back(json::value(d));
        outs.emplace_back(json::value(json::object{{"name", json::value(t.spec.name)},
                                                   {"dtype", json::value(std::string(dtype_name(t.spec.type)))},
                                                   {"shape", json::value(std::move(shape))},
                                                   {"from", json::value(t.origin)}}));
      }
      std::cout << json::dump(json::value(json::object{{"family", json::value(s.spec.name)},
                                                        {"model_type", json::value(s.model_type)},
                                                        {"from", json::value(s.layout->name)},
                                                        {"to", json::value(target->name)},
                                                        {"total_bytes", json::value(plan.total_bytes)},
                                                        {"tensors", json::value(std::move(outs))}}),
                              2)
                << "\n";
    } else {
      std::cout << "plan: " << o["source"] << " (" << s.spec.name << ", " << s.layout->name << ") -> layout " << target->name
                << ": " << plan.outputs.size() << " tensors, " << human_bytes(plan.total_bytes) << "\n";
      for (const auto& t : plan.outputs)
        std::cout << "  " << t.spec.name << "  " << dtype_name(t.spec.type) << " " << shape_string(t.spec.shape) << "  <- "
                  << t.origin << "\n";
      std::cout << "no problems found; nothing written (--dry-run)\n";
    }
    return 0;
  }

  checkpoint_writer_options wo;
  // Shards are written in parallel, so the default cut (transformers' 5 GB) also helps speed.
  wo.shard_size = o.count("shard_size") ? parse_size(o["shard_size"]) : 5'000'000'000ull;
  wo.file_stem = target->file_stem;
  std::vector<shard_plan> shards = to_gguf ? plan_gguf_file(std::move(specs), target->file_stem) : plan_shards(std::move(specs), wo);

  // The fingerprint ties a resume log to this exact plan: source, target, shard contents.
  std::string fp_text = fs::weakly_canonical(o["source"]).string() + "|" + target->name + "|" + (o.count("experts") ? o["experts"] : "") +
                        (po_.dequantize ? "|bf16" : "");
  for (const auto& sh : shards) {
    fp_text += "|" + sh.file_name;
    for (const auto& t : sh.tensors) fp_text += "," + t.name + ":" + std::string(dtype_name(t.type)) + shape_string(t.shape);
  }
  char fp_hex[32];
  std::snprintf(fp_hex, sizeof fp_hex, "%016llx", static_cast<unsigned long long>(string_hash(fp_text)));
  bool resume = vm["resume"].as<bool>();
  resume_log log;
  log.fingerprint = fp_hex;
  std::vector<bool> skip(shards.size(), false);
  if (resume) {
    auto old = resume_log::load(o["output"]);
    if (!old)
      throw error(o["output"] + ": nothing to resume (no " + resume_log::file_name + "; it is written by a sharded or single-file conversion as it goes)");
    if (old->fingerprint != log.fingerprint)
      throw error(o["output"] + ": the interrupted conversion had another plan (source, target, --experts or --shard-size differ); run it with the same options, or convert into a new directory");
    for (std::size_t i = 0; i < shards.size(); ++i) {
      auto it = old->shards.find(shards[i].file_name);
      fs::path f = fs::path(o["output"]) / shards[i].file_name;
      if (it == old->shards.end() || !fs::exists(f)) continue;
      bool single = shards.size() == 1;  // recorded by size only, see below
      if (fs::file_size(f) == it->second.size &&
          (single || file_checksum(f.string(), o.count("threads") ? std::stoi(o["threads"]) : 0) == it->second.checksum)) {
        skip[i] = true;
        log.shards[it->first] = it->second;
      } else {
        spdlog::warn("{}: size or checksum differs from the resume log; writing it again", f.string());
      }
    }
    for (const auto& de : fs::directory_iterator(o["output"]))  // temporaries of the interrupted run
      if (de.path().filename().string().size() > 8 && de.path().extension() == ".partial") fs::remove(de.path());
    spdlog::info("resuming: {} of {} shards already complete", std::count(skip.begin(), skip.end(), true), shards.size());
  }
  checkpoint_writer writer(o["output"], std::move(shards), resume, to_gguf ? gguf_sink_factory(gguf_md) : sink_factory{});

  execute_progress progress;
  progress.total_bytes = plan.total_bytes;
  progress.total_tensors = plan.outputs.size();
  execute_options eo;
  eo.threads = o.count("threads") ? std::stoi(o["threads"]) : 0;
  eo.progress = &progress;
  eo.hooks = s.hooks();
  eo.skip_shards = skip;
  // Each completed shard gets its size and a checksum in the resume log. The checksum re-reads
  // the shard, so it runs in the background while the next shard is written; a single-file
  // output records its size only (it is complete once renamed into place).
  const char* crash = std::getenv("MOEREG_CRASH_AFTER_SHARDS");  // test aid: simulate a crash
  int crash_after = crash ? std::atoi(crash) : -1;
  int done_here = 0;
  std::mutex log_mutex;
  std::vector<std::future<void>> pending;
  bool multi = writer.shards().size() > 1;
  eo.on_shard_done = [&](std::size_t i) {
    std::string name = writer.shards()[i].file_name;
    fs::path f = fs::path(o["output"]) / name;
    auto record = [&, name, f](int threads) {
      double c0 = now_seconds();
      resume_log::shard entry{fs::file_size(f), multi ? file_checksum(f.string(), threads) : 0};
      std::lock_guard<std::mutex> lock(log_mutex);
      log.shards[name] = entry;
      log.save(o["output"]);
      spdlog::debug("{}: checksum for --resume took {:.2f} s", name, now_seconds() - c0);
    };
    if (crash_after > 0 || !multi) {
      record(eo.threads);
      if (++done_here == crash_after) std::_Exit(70);
    } else {
      // All threads: the last shard's checksum is on the critical path (1.9 s for a 5 GB shard
      // with one thread on the 16-core host; bench-convert.md).
      pending.push_back(std::async(std::launch::async, record, eo.threads));
    }
  };
  double t1 = now_seconds();
  {
    progress_line line("convert", progress);
    execute_plan(plan, writer, eo);
    for (auto& f : pending) f.get();
  }
  // Configuration last, then the index: an interrupted run never looks complete.
  // Dequantized weights are bf16: a quantization_config left behind would make loaders expect scales.
  const bool strip_quant = po_.dequantize && src.quant.quantized() && s.ckpt->config().is_object();
  json::value cfg = s.ckpt->config();
  if (strip_quant) {
    json::object kept;
    for (const auto& [k, v] : cfg.as_object())
      if (k != "quantization_config") kept.emplace_back(k, v);
    cfg = json::value(std::move(kept));
  }
  if (!target->write_config_hook.empty()) {
    std::string text;
    const plugin_record* rec = nullptr;
    for (const auto* r : s.registry->families())
      for (const auto& h : r->hooks)
        if (h == target->write_config_hook) rec = r;
    const moereg_hooks_api* api = rec ? s.registry->hooks(*rec) : nullptr;
    if (!api || !api->write_config) throw error("layout '" + target->name + "': no loaded library provides hook '" + target->write_config_hook + "'");
    std::string cfg_text = json::dump(cfg);
    throw_if_error(api->write_config(target->write_config_hook.c_str(), cfg_text.c_str(),
                                     moereg_sink{&text, [](void* c, const char* d, std::size_t n) { static_cast<std::string*>(c)->append(d, n); }}),
                   "plugin '" + rec->name + "' writing " + target->config_file);
    writer.write_file(target->config_file, text);
  } else if (strip_quant) {
    writer.write_file("config.json", json::dump(cfg, 2) + "\n");
  } else if (!s.native_config && s.ckpt->is_directory() && fs::exists(fs::path(s.ckpt->path()) / "config.json")) {
    std::ifstream in(fs::path(s.ckpt->path()) / "config.json", std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    writer.write_file("config.json", ss.str());  // the original bytes, untouched
  } else {
    writer.write_file("config.json", json::dump(cfg, 2) + "\n");
  }
  if (s.ckpt->is_directory())
    for (const char* f : aux_files) {
      fs::path a = fs::path(s.ckpt->path()) / f;
      if (fs::exists(a)) {
        std::ifstream in(a, std::ios::binary);
        std::ostringstream ss;
        ss << in.rdbuf();
        writer.write_file(f, ss.str());
      }
    }
  writer.finish(writer.shards().size() > 1);
  std::error_code ec;
  fs::remove(fs::path(o["output"]) / resume_log::file_name, ec);
  double t_exec = now_seconds() - t1;
  double rate = t_exec > 0 ? static_cast<double>(plan.total_bytes) / t_exec : 0;
  if (globals.json) {
    std::cout << json::dump(json::value(json::object{{"family", json::value(s.spec.name)},
                                                      {"model_type", json::value(s.model_type)},
                                                      {"from", json::value(s.layout->name)},
                                                      {"to", json::value(target->name)},
                                                      {"output", json::value(o["output"])},
                                                      {"tensors", json::value(static_cast<std::uint64_t>(plan.outputs.size()))},
                                                      {"total_bytes", json::value(plan.total_bytes)},
                                                      {"shards", json::value(static_cast<std::uint64_t>(writer.shards().size()))},
                                                      {"plan_seconds", json::value(t_plan)},
                                                      {"write_seconds", json::value(t_exec)},
                                                      {"bytes_per_second", json::value(rate)}}),
                            2)
              << "\n";
  } else {
    std::cout << "converted " << o["source"] << " (" << s.spec.name << ", " << s.layout->name << ") -> " << o["output"] << " ("
              << target->name << "): " << plan.outputs.size() << " tensors, " << human_bytes(plan.total_bytes) << " in "
              << writer.shards().size() << " file(s), " << t_exec << " s (" << rate / 1e6 << " MB/s)\n";
  }
  return 0;
}

}  // namespace moereg::cli
