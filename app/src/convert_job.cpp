// SPDX-License-Identifier: Apache-2.0
#include "convert_job.h"

#include "expert_parallel.h"
#include "free_space.h"
#include "job_partition.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>

#include "moereg/base/cancel.h"
#include "moereg/base/error.h"
#include "moereg/base/log.h"
#include "moereg/base/parallel.h"
#include "moereg/base/test_stop.h"
#include "moereg/base/units.h"
#include "moereg/checkpoint/resume_log.h"
#include "moereg/checkpoint/summary.h"
#include "moereg/gguf/gguf_family.h"
#include "moereg/gguf/gguf_output.h"
#include "moereg/gguf/gguf_tokenizer.h"
#include "moereg/base/regular_file.h"

namespace fs = std::filesystem;

namespace moereg::app {

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

const char* aux_files[] = {"generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                           "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja", "preprocessor_config.json"};

// Thrown by the fault injection (convert_request::fault) to stop the job as a crash would.
struct abandoned {
  int shards;
};

// While a job writes: reports progress to the caller about ten times a second, and turns the
// caller's cancel flag into a cancel request the writers see. The last report (final) comes
// from stop(), after every byte is written.
class progress_pump {
 public:
  progress_pump(const convert_request& req, const execute_progress& p) : req_(req), p_(p), start_(now_seconds()) {
    if (req_.cancel && req_.cancel->load()) request_cancel();  // set before the job: stop at the first write
    if (!req_.on_progress && !req_.cancel) return;
    try {
      thread_ = std::thread([this] {
        std::unique_lock<std::mutex> lock(mutex_);
        while (!cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping_; })) {
          if (req_.cancel && req_.cancel->load()) request_cancel();
          report(false);
        }
      });
    } catch (const std::system_error& e) {  // no thread to spare: the job runs, unwatched
      spdlog::warn("no progress reports and no cancel flag for this job: cannot start a thread ({})", e.what());
    }
  }
  ~progress_pump() { join(); }
  // After every byte is written: the counts are then the totals (the executor counts output
  // bytes, and the job counts what a resume kept as done).
  void finish() {
    join();
    report(true);
  }

 private:
  void join() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void report(bool final) const {
    if (!req_.on_progress) return;
    convert_progress c;
    c.total_bytes = p_.total_bytes;
    c.total_tensors = p_.total_tensors;
    c.bytes = p_.bytes.load();
    c.tensors = p_.tensors.load();
    c.seconds = now_seconds() - start_;
    c.final = final;
    try {
      req_.on_progress(c);
    } catch (...) {  // a callback must not throw; if it does, progress is not worth a failed job
    }
  }
  const convert_request& req_;
  const execute_progress& p_;
  double start_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

// A cancel request lives until the job that saw it ends.
struct cancel_request_scope {
  ~cancel_request_scope() { clear_cancel_request(); }
};

void check_request(const convert_request& r) {
  if (r.source.empty()) throw usage_error("convert: no source checkpoint given");
  if (!r.dry_run && r.output.empty()) throw usage_error("convert: no output directory given");
  if (r.experts && (r.experts->first < 0 || r.experts->first >= r.experts->second))
    throw usage_error("convert: experts [" + std::to_string(r.experts->first) + ", " + std::to_string(r.experts->second) +
                      "): expected 0 <= first < second");
  if (r.expert_parallel < 0) throw usage_error("convert: expert_parallel (--ep) must be 1 or more, or 0 for off");
  if (r.expert_parallel > 0 && r.experts)
    throw usage_error("convert: --ep N writes expert ranges of its own; it does not combine with --experts A:B");
  if (r.fault.abandon_after_shards < 0) throw usage_error("convert: fault.abandon_after_shards must be 0 or more");
  if (r.to_bf16 && r.to_f32) throw usage_error("convert: to_bf16 and to_f32 both set (--dtype takes one of bf16 or f32)");
  resolve_threads(r.threads);  // its range, before any work
}

std::string read_file(const fs::path& p) { return read_regular_file(p.string()); }

// Configuration last (the caller writes the index after it): an interrupted run never looks complete.
void write_configuration(const model_session& s, const layout_spec& target, bool strip_quant, const ep_slice* slice,
                         const std::optional<std::pair<std::int64_t, std::int64_t>>& range, checkpoint_writer& writer) {
  // An expert range says so: the local expert count, and the global ids in a `moereg` section.
  json::value cfg = slice   ? ep_slice_config(s.ckpt->config(), s.dims, *slice)
                    : range ? expert_range_config(s.ckpt->config(), s.dims, range->first, range->second, nullptr)
                            : s.ckpt->config();
  if (strip_quant) {
    // Dequantized weights are bf16: a quantization_config left behind would make loaders expect scales.
    json::object kept;
    for (const auto& [k, v] : cfg.as_object())
      if (k != "quantization_config") kept.emplace_back(k, v);
    cfg = json::value(std::move(kept));
  }
  if (!target.write_config_hook.empty()) {
    std::string text;
    auto [rec, api] = s.hook_library(target.write_config_hook);
    if (!api || !api->write_config)
      throw error("layout '" + target.name + "': " + rec->library_path + " has no write_config slot (needed for hook '" +
                  target.write_config_hook + "')");
    std::string cfg_text = json::dump(cfg);
    throw_if_error(api->write_config(target.write_config_hook.c_str(), cfg_text.c_str(),
                                     moereg_sink{&text, [](void* c, const char* d, std::size_t n) { static_cast<std::string*>(c)->append(d, n); }}),
                   "plugin '" + rec->name + "' writing " + target.config_file);
    writer.write_file(target.config_file, text);
  } else if (!strip_quant && !slice && !range && !s.native_config && s.ckpt->is_directory() && fs::exists(fs::path(s.ckpt->path()) / "config.json")) {
    writer.write_file("config.json", read_file(fs::path(s.ckpt->path()) / "config.json"));  // the original bytes, untouched
  } else {
    writer.write_file("config.json", json::dump(cfg, 2) + "\n");
  }
  if (s.ckpt->is_directory())
    for (const char* f : aux_files)
      if (fs::path a = fs::path(s.ckpt->path()) / f; fs::exists(a)) writer.write_file(f, read_file(a));
  // A .gguf's tokenizer keys back as tokenizer files, unless its directory has the originals.
  const gguf_file* g = s.ckpt->gguf();
  auto beside = [&](const char* f) { return s.ckpt->is_directory() && fs::exists(fs::path(s.ckpt->path()) / f); };
  if (g && target.container != "gguf" && !beside("tokenizer.json") && !beside("tokenizer.model") && !beside("tokenizer_config.json")) {
    std::string skipped;
    for (const auto& [name, bytes] : gguf_tokenizer_files(g->metadata(), g->path(), &skipped)) writer.write_file(name, bytes);
    if (!skipped.empty()) spdlog::warn("{}; no tokenizer files written", skipped);
  }
}

// The fingerprint ties a resume log to this exact plan: source, target, shard contents.
std::string plan_fingerprint(const convert_request& r, const layout_spec& target, const plan_options& popts,
                             const std::string& edits, const std::vector<shard_plan>& shards) {
  const bool dequantize = popts.dequantize;
  std::string text = fs::weakly_canonical(r.source).string() + "|" + target.name + "|" +
                     (popts.experts ? std::to_string(popts.experts->first) + ":" + std::to_string(popts.experts->second) : "") +
                     (popts.renumber_experts ? "|renumbered" : "") +
                     (dequantize ? "|bf16" : "") + edits;
  for (const auto& sh : shards) {
    text += "|" + sh.file_name;
    for (const auto& t : sh.tensors) text += "," + t.name + ":" + std::string(dtype_name(t.type)) + shape_string(t.shape);
  }
  char hex[32];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(string_hash(text)));
  return hex;
}

// --resume: which shards an interrupted run completed (size and checksum as logged), and the
// log entries kept for them. Removes the interrupted run's temporaries.
// merged_part_logs gets the part logs read (an MPI job's): the caller removes them once `log`,
// which now holds their shards, is saved.
std::vector<bool> shards_to_skip(const std::string& out, const std::vector<shard_plan>& shards, resume_log& log, int threads,
                                 std::vector<std::string>& merged_part_logs) {
  auto old = resume_log::load(out);
  if (!old && fs::exists(fs::path(out) / "config.json"))  // written last but the index: a finished job
    throw error(out + ": nothing to resume: the conversion into it completed (its resume log is removed then)");
  if (!old && fs::exists(fs::path(out) / ep_record_name))
    throw error(out + ": holds the slices of a --ep job (" + ep_record_name + " records it): resume it with the same --ep N");
  if (!old) throw error(out + ": nothing to resume (no " + resume_log::file_name + "; it is written when a conversion starts)");
  if (old->fingerprint != log.fingerprint) {
    std::string differ;
    for (const auto& [k, now] : log.options)
      if (auto it = old->options.find(k); it != old->options.end() && it->second != now)
        differ += (differ.empty() ? "" : ", ") + k + " was " + it->second + ", now " + now;
    // A key only one side has: a LoRA merge resumed as a plain conversion, or the reverse
    // (logs written before a key existed have none of it, and say nothing about it).
    if (!old->options.empty())
      for (const auto& [k, was] : old->options)
        if (!log.options.count(k)) differ += (differ.empty() ? "" : ", ") + k + " was " + was + ", now none";
    if (!old->options.empty())
      for (const auto& [k, now] : log.options)
        if (!old->options.count(k) && (k == "adapter" || k == "--rounding"))
          differ += (differ.empty() ? "" : ", ") + k + " was none, now " + now;
    throw error(out + ": the interrupted conversion had another plan (" +
                (differ.empty() ? std::string("source, --to, --experts, --dtype, --shard-size, or the source's tensors differ") : differ) +
                "); run it with the same options, or convert into a new directory");
  }
  old->check_sources(log);
  // Shards completed by the other processes of an MPI job, each logged by its own process.
  for (const auto& de : fs::directory_iterator(out)) {
    const std::string name = de.path().filename().string();
    if (!resume_log::is_part_file_name(name)) continue;
    auto part = resume_log::load(out, name);
    merged_part_logs.push_back(name);
    if (!part || part->fingerprint != old->fingerprint) continue;  // an older job's: nothing of ours
    for (const auto& [shard, entry] : part->shards) old->shards[shard] = entry;
  }
  std::vector<bool> skip(shards.size(), false);
  for (std::size_t i = 0; i < shards.size(); ++i) {
    auto it = old->shards.find(shards[i].file_name);
    fs::path f = fs::path(out) / shards[i].file_name;
    if (it == old->shards.end() || !fs::exists(f)) continue;
    if (fs::file_size(f) == it->second.size && file_checksum(f.string(), threads) == it->second.checksum) {
      skip[i] = true;
      log.shards[it->first] = it->second;
    } else {
      spdlog::warn("{}: size or checksum differs from the resume log; writing it again", f.string());
    }
  }
  for (const auto& de : fs::directory_iterator(out))  // temporaries of the interrupted run
    if (de.path().filename().string().size() > 8 && de.path().extension() == ".partial") fs::remove(de.path());
  spdlog::info("resuming: {} of {} shards already complete", std::count(skip.begin(), skip.end(), true), shards.size());
  return skip;
}

// The metadata of a .gguf output, after checking its tensors fit one.
gguf_metadata checked_gguf_metadata(const model_session& s, const layout_spec& target, const std::vector<tensor_spec>& specs) {
  std::vector<std::string> problems = gguf_output_problems(specs);
  if (!problems.empty()) {
    std::string msg = "the conversion to layout '" + target.name + "' (a .gguf file) is not possible:";
    for (const auto& p : problems) msg += "\n  " + p;
    throw error(msg);
  }
  // Keys of a .gguf source that the family does not compute (tokenizer.*, general.name, ...)
  // carry over there; a checkpoint directory's tokenizer files become tokenizer.* keys.
  std::string skipped;
  gguf_metadata md = gguf_output_metadata(s.spec, s.ckpt->config(), s.ckpt->config_path(), s.ckpt->gguf(), specs,
                                          s.ckpt->is_directory() ? s.ckpt->path() : std::string(), &skipped);
  if (!skipped.empty()) spdlog::warn("{}; the .gguf gets no tokenizer (tokenizer.ggml.model \"none\")", skipped);
  // Dense layers made by a config field that no metadata key of the family carries: the
  // .gguf reads back with its config.json beside it, but not alone (its layers would all be
  // MoE), and llama.cpp's architecture expects experts in every layer.
  const moe_layer_rule& ml = s.spec.moe_layers;
  auto carried = [&](const std::string& field) {
    for (const auto& r : s.spec.gguf.metadata)
      if (std::find(r.config.begin(), r.config.end(), field) != r.config.end()) return true;
    return false;
  };
  const json::value& cfg = s.ckpt->config();
  std::string uncarried;
  auto note = [&](const std::string& field, bool makes_dense) {
    if (makes_dense && !carried(field)) uncarried += (uncarried.empty() ? "" : ", ") + field;
  };
  if (!ml.dense_layers.empty())
    if (const json::value* v = cfg.find_path(ml.dense_layers); v && v->is_array() && !v->as_array().empty()) note(ml.dense_layers, true);
  for (const config_value* c : {&ml.sparse_step, &ml.first_dense})
    for (const auto& f : c->fields)
      if (const json::value* v = cfg.find_path(f); v && v->is_number())
        note(f, c == &ml.sparse_step ? v->as_double() > 1 : v->as_double() > 0);
  if (!uncarried.empty())
    spdlog::warn("{}: its dense layers (config.json {}) are not recorded in the .gguf's metadata: the .gguf reads back only with "
                 "the config.json written beside it, and llama.cpp's {} expects experts in every layer",
                 s.ckpt->path(), uncarried, s.spec.gguf.architecture);
  return md;
}

}  // namespace

// The sources by identity, not only by path: a resume from files changed since is refused.
void identify_sources(const checkpoint& ckpt, resume_log& log) {
  for (const auto& f : ckpt.files()) log.sources[fs::weakly_canonical(f->path()).string()] = resume_log::identify(f->path(), f->data_offset());
  if (!ckpt.config_path().empty() && fs::is_regular_file(ckpt.config_path()))
    log.sources.try_emplace(fs::weakly_canonical(ckpt.config_path()).string(), resume_log::identify(ckpt.config_path(), ~std::uint64_t{0}));
}

namespace {

// One conversion job, phase by phase: planned when made; then either described (a dry run)
// or written - the output opened (locked, what a resume keeps, this process's shards), the
// shards written with their checksums, and (by the coordinating process) the configuration and
// the index last.
class conversion_job {
 public:
  conversion_job(const convert_request& r, const plan_editor& edit, const ep_slice* slice, const job_partition* part)
      : r_(r), slice_(slice), part_(part), t0_(now_seconds()), s_(open_session({r.source, r.family, r.from, r.to, r.plugin_paths})),
        // No target: the source's own layout (a LoRA merge written as its base is stored).
        target_(r.to.empty() ? s_.layout : s_.spec.find_layout(r.to)),
        src_(decode_checkpoint(*s_.ckpt, s_.spec, *s_.layout, s_.dims)),
        popts_(options()),
        plan_(plan_conversion(src_, *target_, popts_)),
        to_gguf_(target_->container == "gguf"),
        coordinator_(!part || part->rank == 0) {
    edit_fingerprint_ = edit ? edit(s_, plan_, edit_record_) : std::string();
    rep_.family = s_.spec.name;
    rep_.model_type = s_.model_type;
    rep_.from = s_.layout->name;
    rep_.to = target_->name;
    rep_.output = r.output;
    rep_.tensors = plan_.outputs.size();
    rep_.total_bytes = plan_.total_bytes;
    rep_.plan_seconds = now_seconds() - t0_;
    spdlog::info("{}: family {} ({}), layout {} -> {}; {} tensors, {} ({} planned in {})", r.source, s_.spec.name, s_.model_type,
                 s_.layout->name, target_->name, plan_.outputs.size(), human_bytes(plan_.total_bytes), s_.dims.describe(),
                 format_duration(rep_.plan_seconds));
    // A layout with container: gguf is written as one .gguf (OUT/<stem>.gguf, config.json beside it).
    for (const auto& t : plan_.outputs) specs_.push_back(t.spec);
    if (to_gguf_ && r.shard_size) throw usage_error("--shard-size: layout '" + target_->name + "' writes one .gguf file, which is not sharded");
    if (to_gguf_) {
      gguf_md_ = checked_gguf_metadata(s_, *target_, specs_);
      if (std::vector<gguf_value> kept = f32_as_stored(); !kept.empty())
        gguf_md_.emplace_back(gguf_f32_as_stored_key, gguf_value::array(gguf_type::string, std::move(kept)));
    }
    // Shards are written in parallel, so the default cut (transformers' 5 GB) also helps speed.
    wo_.shard_size = r.shard_size.value_or(5'000'000'000ull);
    wo_.file_stem = target_->file_stem;
  }

  // A .gguf's F32 tensors that were F32 in the source and that a reader would take for
  // llama.cpp's widening of a BF16 one (gguf_family.h): a bf16 model's F32 router or bias.
  std::vector<gguf_value> f32_as_stored() const {
    std::set<const checkpoint::entry*> widened;  // a .gguf source's F32 tensors read as BF16
    for (const auto& p : src_.others)
      if (p.narrow_to) widened.insert(p.source);
    std::vector<gguf_value> names;
    for (const auto& o : plan_.outputs) {
      const stored_output* st = o.stored();
      if (!st || st->cast_from || st->ggml_decode || o.spec.type != dtype::F32 || st->source->info->type != dtype::F32 ||
          widened.count(st->source))
        continue;
      if (gguf_wants_f32(s_.spec, {o.spec.name, dtype::BF16, o.spec.shape})) names.push_back(gguf_value::string(o.spec.name));
    }
    return names;
  }

  // The plan, and the shards it would make; nothing written.
  convert_report describe() {
    for (const auto& t : plan_.outputs) rep_.plan.push_back({t.spec.name, std::string(dtype_name(t.spec.type)), t.spec.shape, t.origin});
    rep_.shards = to_gguf_ ? 1 : plan_shards(std::move(specs_), wo_).size();
    return rep_;
  }

  convert_report write() {
    std::vector<shard_plan> shards = to_gguf_ ? plan_gguf_file(std::move(specs_), target_->file_stem) : plan_shards(std::move(specs_), wo_);
    log_.fingerprint = plan_fingerprint(r_, *target_, popts_, edit_fingerprint_, shards);
    log_.options = {{"source", fs::weakly_canonical(r_.source).string()},
                    {"--to", target_->name},
                    {"--experts", popts_.experts ? std::to_string(popts_.experts->first) + ":" + std::to_string(popts_.experts->second) : "(all)"},
                    {"--dtype", r_.to_bf16 ? "bf16" : r_.to_f32 ? "f32" : "(as stored)"},
                    {"--shard-size", to_gguf_ ? "(one .gguf)" : std::to_string(wo_.shard_size) + " bytes"}};
    for (const auto& [k, v] : edit_record_.options) log_.options[k] = v;
    identify_sources(*s_.ckpt, log_);
    for (const auto& f : edit_record_.sources)  // small files (an adapter's config) and safetensors alike: hashed up to 64 MiB
      log_.sources.try_emplace(fs::weakly_canonical(f).string(), resume_log::identify(f, ~std::uint64_t{0}));
    if (part_) part_->agree_on_plan(log_.fingerprint);
    open_output(std::move(shards));
    checkpoint_writer& writer = *writer_;
    const double t1 = now_seconds();
    try {
      test_stop_point("job-start");
      write_shards();
      if (!coordinator_) {
        log_.check_unchanged();
        writer.keep_for_resume();  // its shards are done; rank 0 completes the output
        rep_.write_seconds = now_seconds() - t1;
        return rep_;
      }
      const bool strip_quant = popts_.dequantize && src_.quant.quantized() && s_.ckpt->config().is_object();
      write_configuration(s_, *target_, strip_quant, slice_, r_.experts, writer);
      // After the last read of the sources (config.json included), before the output is complete.
      log_.check_unchanged();
      writer.finish(writer.shards().size() > 1);
    } catch (const abandoned& a) {
      wait_for_checksums();
      writer.keep_for_resume();
      throw cancelled(0, r_.output + ": stopped by fault injection after " + std::to_string(a.shards) +
                             " shards, as a crash would stop it; resume it");
    } catch (const cancelled& c) {
      // Stopped by a signal or a cancel request: keep what --resume can use, and say so.
      wait_for_checksums();
      writer.keep_for_resume();
      throw cancelled(c.signal_number(), r_.output + ": " +
                                             (writer.shards().size() > 1 ? "the completed shards and the resume log were kept"
                                                                          : "the resume log was kept (a one-file output is written whole)") +
                                             ", unfinished files removed; run the same command with --resume to finish");
    } catch (...) {
      // One process of a job shared with others: what every process completed stays for --resume.
      if (!part_) throw;
      wait_for_checksums();
      writer.keep_for_resume();
      throw;
    }
    rep_.write_seconds = now_seconds() - t1;
    return rep_;
  }

 private:
  plan_options options() const {
    plan_options o;
    o.experts = r_.experts;
    // An expert range is a checkpoint of B-A experts by itself, as an --ep slice is: per-expert
    // keys count from 0, and config.json gives the global ids.
    o.renumber_experts = r_.experts.has_value();
    if (r_.experts || slice_) refuse_slicing_a_slice(s_.ckpt->config(), slice_ ? "--ep" : "--experts A:B");
    if (slice_) {
      if (target_->container == "gguf")
        throw usage_error("--ep: layout '" + target_->name + "' writes a .gguf, whose metadata cannot describe an expert slice; "
                          "convert the slices to a safetensors layout");
      o.experts = ep_expert_range(s_.dims, *slice_);
      o.renumber_experts = true;
    }
    o.dequantize = r_.to_bf16 || r_.to_f32;
    if (r_.to_f32) o.dequantize_to = dtype::F32;
    return o;
  }

  // Locks OUT (rank 0; the other ranks join its lock), decides what a resume keeps, records
  // the resume log before the first shard, and leaves in skip_ every shard this process does
  // not write.
  void open_output(std::vector<shard_plan> shards) {
    const sink_factory sinks = to_gguf_ ? gguf_sink_factory(gguf_md_) : sink_factory{};
    if (coordinator_) {
      // Locks OUT for the whole job: a second process into the same OUT is refused.
      writer_ = std::make_unique<checkpoint_writer>(r_.output, std::move(shards), r_.resume, sinks);
      std::vector<std::string> merged_part_logs;
      skip_ = r_.resume ? shards_to_skip(r_.output, writer_->shards(), log_, r_.threads, merged_part_logs)
                        : std::vector<bool>(writer_->shards().size(), false);
      // Recorded before the first shard, so a job interrupted at any point can be resumed.
      writer_->add_bookkeeping_file(resume_log::file_name, !r_.resume);
      log_.save(r_.output);
      std::error_code ec;
      for (const auto& name : merged_part_logs) fs::remove(fs::path(r_.output) / name, ec);  // their shards are in log_ now
      if (part_) {
        for (int k = 1; k < part_->ranks; ++k) writer_->add_bookkeeping_file(resume_log::part_file_name(k), false);
        skip_ = part_->share_complete(skip_);
      }
    } else {
      skip_ = part_->share_complete({});
      writer_ = std::make_unique<checkpoint_writer>(r_.output, std::move(shards), output_lock::joined, sinks);
    }
    if (coordinator_) check_free_space();
    rep_.resumed_shards = static_cast<std::uint64_t>(std::count(skip_.begin(), skip_.end(), true));
    if (coordinator_) kept_ = skip_;
    rep_.shards = writer_->shards().size();
    if (part_) {
      const std::vector<int> owner = assign_shards(writer_->shards(), skip_, part_->ranks);
      for (std::size_t i = 0; i < skip_.size(); ++i) skip_[i] = owner[i] != part_->rank;
    }
  }

  // Before the first byte: a job whose shards (those a resume still has to write, of every
  // process) exceed the free space of OUT's filesystem is refused now rather than when a write
  // fails, perhaps hours in. A filesystem that reports no figure is not checked.
  void check_free_space() const {
    std::uint64_t need = 0;
    std::size_t count = 0;
    for (std::size_t i = 0; i < skip_.size(); ++i)
      if (!skip_[i]) need += writer_->shards()[i].bytes, ++count;
    // --ep: the slices of an even split are the same size, and this one and those after it are
    // still to write (on a resume only this one is known to be).
    const std::uint64_t slices = slice_ && !r_.resume ? static_cast<std::uint64_t>(slice_->ranks - slice_->rank) : 1;
    need *= slices;
    count *= slices;
    const std::optional<std::uint64_t> room = r_.fault.free_bytes ? r_.fault.free_bytes : app::free_bytes(r_.output);
    if (!room) return;
    const std::uint64_t free = *room;
    if (need > free)
      throw error(r_.output + ": the conversion writes " + human_bytes(need) + " (" + std::to_string(count) +
                  (count == 1 ? " file" : " files") + (slices > 1 ? " in " + std::to_string(slices) + " slices" : "") +
                  ") and the filesystem there has " + human_bytes(free) +
                  " free; free some space or convert into a directory on another filesystem");
  }

  // Every shard of this process, each logged with its size and checksum as it completes.
  void write_shards() {
    checkpoint_writer& writer = *writer_;
    // Rank r > 0 of an MPI job logs its shards in a file of its own: one writer per file.
    const std::string log_name = coordinator_ ? std::string(resume_log::file_name) : resume_log::part_file_name(part_->rank);
    execute_progress progress, whole;
    progress.total_bytes = whole.total_bytes = plan_.total_bytes;
    progress.total_tensors = whole.total_tensors = plan_.outputs.size();
    // What a resume kept counts as done (once: on the coordinator, whose counts MPI sums).
    for (std::size_t i = 0; i < kept_.size(); ++i)
      if (kept_[i])
        for (const tensor_spec& t : writer.shards()[i].tensors) progress.bytes += t.nbytes(), progress.tensors++;
    execute_options eo;
    eo.threads = r_.threads;
    eo.progress = &progress;
    eo.hooks = s_.hooks();
    eo.skip_shards = skip_;
    eo.kernel_copy = r_.kernel_copy;
    // Each completed shard gets its size and a checksum in the resume log. The checksum re-reads
    // the shard, so it runs in the background while the next shard is written. A one-file output
    // is renamed into place only when the job completes, so it has nothing to log.
    const bool multi = writer.shards().size() > 1;
    int logged_here = 0;
    bool gave_up = false;
    eo.on_shard_done = [&](std::size_t i) {
      if (!multi || gave_up) return;
      const std::string name = writer.shards()[i].file_name;
      const fs::path f = fs::path(r_.output) / name;
      auto record = [this, name, f, log_name](int checksum_threads) {
        const double c0 = now_seconds();
        resume_log::shard entry{fs::file_size(f), file_checksum(f.string(), checksum_threads)};
        std::lock_guard<std::mutex> lock(log_mutex_);
        log_.shards[name] = entry;
        log_.save(r_.output, log_name);
        spdlog::debug("{}: checksum for --resume took {}", name, format_duration(now_seconds() - c0));
      };
      if (r_.fault.abandon_after_shards > 0) {
        record(r_.threads);
        if (++logged_here == r_.fault.abandon_after_shards) {
          gave_up = true;
          throw abandoned{logged_here};
        }
      } else {
        // All threads: the last shard's checksum is on the critical path (1.9 s for a 5 GB shard
        // with one thread on the 16-core host; bench-convert.md).
        pending_.push_back(std::async(std::launch::async, record, r_.threads));
      }
      test_stop_point("shard-done");
    };
    progress_pump pump(r_, part_ ? whole : progress);
    auto write = [&] {
      execute_plan(plan_, writer, eo);
      for (auto& f : pending_) f.get();
    };
    if (part_) part_->write_together(write, progress, whole);
    else write();
    pump.finish();
  }

  void wait_for_checksums() {
    for (auto& f : pending_)
      if (f.valid()) f.wait();
  }

  const convert_request& r_;
  const ep_slice* slice_;
  const job_partition* part_;
  const double t0_;
  model_session s_;
  const layout_spec* target_;
  decoded_checkpoint src_;
  plan_options popts_;
  conversion_plan plan_;
  const bool to_gguf_, coordinator_;
  std::string edit_fingerprint_;
  plan_edit_record edit_record_;
  convert_report rep_;
  std::vector<tensor_spec> specs_;
  gguf_metadata gguf_md_;
  checkpoint_writer_options wo_;
  resume_log log_;
  std::unique_ptr<checkpoint_writer> writer_;
  std::vector<bool> skip_;
  std::vector<bool> kept_;  // shards a resume kept (coordinator only)
  std::mutex log_mutex_;                      // before pending_: the checksums lock it
  std::vector<std::future<void>> pending_;    // background checksums of completed shards
};

}  // namespace

convert_report run_conversion(const convert_request& r, const plan_editor& edit, const ep_slice* slice, const job_partition* part) {
  check_request(r);
  cancel_request_scope cancel_scope;
  conversion_job job(r, edit, slice, part);
  return r.dry_run ? job.describe() : job.write();
}

}  // namespace moereg::app
