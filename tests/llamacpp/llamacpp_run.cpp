// SPDX-License-Identifier: Apache-2.0
// llamacpp_run - runs a .gguf in real llama.cpp (the prebuilt libllama of the pinned npm
// package, dlopen'ed through its C API) and checks it against a fixture's logits, or decodes
// ggml blocks with ggml's own to_float. The tests (test_llamacpp.cpp) run it as a child process so
// that llama.cpp's aborts (GGML_ASSERT) fail one test instead of the test binary.
//
//   llamacpp_run logits LIBDIR MODEL.gguf LOGITS.safetensors
//     decodes input_ids [1,T] with every position's logits and compares with logits_f32
//     [1,T,V]: passes (exit 0) when max |llama - ref| <= 5 % of max |ref| and the argmax agrees
//     at every position (a position whose reference top two are within 1e-4 of max |ref| is a
//     tie and passes either way). Prints one line: ratio, max diff, argmax agreement.
//   llamacpp_run run LIBDIR MODEL.gguf T
//     loads the model and decodes tokens 0..T-1 (modulo the vocabulary) with every position's
//     logits, for a model without reference logits: passes when every logit is finite and
//     the logits are not all equal. Prints one line: vocabulary, positions, argmax per position.
//   llamacpp_run tokenize LIBDIR MODEL.gguf TEXT.txt
//     loads the vocabulary only and tokenizes the file's text as llama.cpp's tools do (special
//     tokens added and parsed). Prints the vocabulary size, the token ids, and the ids detokenized
//     back to text (special tokens shown), one line each; a test compares two files' output.
//   llamacpp_run to_float LIBDIR TYPE IN.bin OUT.bin
//     ggml's own dequantization (libggml-base's type traits to_float) of the blocks of ggml
//     type id TYPE in IN.bin, written as float32 to OUT.bin.
// Exit: 0 pass, 1 mismatch or load/decode failure (llama.cpp's message on stderr), 2 usage.
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "llama.h"
#include "moereg/base/error.h"
#include "moereg/safetensors/safetensors_reader.h"

namespace {

void* sym(void* lib, const char* name) {
  void* p = dlsym(lib, name);
  if (!p) throw moereg::error(std::string("llama.cpp library has no symbol ") + name);
  return p;
}

template <class F>
F fn(void* lib, const char* name) {
  return reinterpret_cast<F>(sym(lib, name));
}

struct llama_api {
  void* lib = nullptr;
  decltype(&llama_backend_init) backend_init;
  decltype(&llama_log_set) log_set;
  decltype(&llama_model_default_params) model_default_params;
  decltype(&llama_context_default_params) context_default_params;
  decltype(&llama_model_load_from_file) model_load_from_file;
  decltype(&llama_model_free) model_free;
  decltype(&llama_init_from_model) init_from_model;
  decltype(&llama_free) free_context;
  decltype(&llama_model_get_vocab) model_get_vocab;
  decltype(&llama_vocab_n_tokens) vocab_n_tokens;
  decltype(&llama_batch_init) batch_init;
  decltype(&llama_batch_free) batch_free;
  decltype(&llama_decode) decode;
  decltype(&llama_get_logits_ith) get_logits_ith;
  decltype(&llama_tokenize) tokenize;
  decltype(&llama_detokenize) detokenize;

  explicit llama_api(const std::string& libdir) {
    std::string path;
    for (const auto& e : std::filesystem::directory_iterator(libdir)) {
      std::string n = e.path().filename().string();
      if (n.rfind("libllama.", 0) == 0 && n.find(".so") != std::string::npos) path = e.path().string();
    }
    if (path.empty()) throw moereg::error(libdir + ": no libllama*.so");
    lib = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!lib) throw moereg::error(std::string("dlopen ") + path + ": " + dlerror());
    log_set = fn<decltype(log_set)>(lib, "llama_log_set");
    // Only warnings and errors, on stderr: the reason a load fails is what the test reports,
    // and stdout stays the result alone.
    log_set(
        [](ggml_log_level level, const char* text, void*) {
          if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) std::fputs(text, stderr);
        },
        nullptr);
    // The CPU backends are separate libraries (one per instruction set); ggml picks the best.
    using load_all_t = void (*)(const char*);
    fn<load_all_t>(lib, "ggml_backend_load_all_from_path")(libdir.c_str());
    backend_init = fn<decltype(backend_init)>(lib, "llama_backend_init");
    model_default_params = fn<decltype(model_default_params)>(lib, "llama_model_default_params");
    context_default_params = fn<decltype(context_default_params)>(lib, "llama_context_default_params");
    model_load_from_file = fn<decltype(model_load_from_file)>(lib, "llama_model_load_from_file");
    model_free = fn<decltype(model_free)>(lib, "llama_model_free");
    init_from_model = fn<decltype(init_from_model)>(lib, "llama_init_from_model");
    free_context = fn<decltype(free_context)>(lib, "llama_free");
    model_get_vocab = fn<decltype(model_get_vocab)>(lib, "llama_model_get_vocab");
    vocab_n_tokens = fn<decltype(vocab_n_tokens)>(lib, "llama_vocab_n_tokens");
    batch_init = fn<decltype(batch_init)>(lib, "llama_batch_init");
    batch_free = fn<decltype(batch_free)>(lib, "llama_batch_free");
    decode = fn<decltype(decode)>(lib, "llama_decode");
    get_logits_ith = fn<decltype(get_logits_ith)>(lib, "llama_get_logits_ith");
    tokenize = fn<decltype(tokenize)>(lib, "llama_tokenize");
    detokenize = fn<decltype(detokenize)>(lib, "llama_detokenize");
    backend_init();
  }
};

const float* f32_tensor(const moereg::safetensors_file& f, const char* name, std::size_t& count) {
  const moereg::tensor_info* t = f.find(name);
  if (!t || t->type != moereg::dtype::F32) throw moereg::error(f.path() + ": no F32 tensor '" + name + "'");
  count = t->numel();
  return reinterpret_cast<const float*>(f.file().data() + f.data_offset() + t->begin);
}

// A model loaded on the CPU and, after decode(), a context that holds every position's logits
// of the tokens given: what `logits` and `run` share. Each failure prints llama.cpp's side of it
// on stderr; the destructor frees what was made.
class llama_session {
 public:
  llama_session(const llama_api& api, const std::string& model_path) : api_(api), path_(model_path) {
    llama_model_params mp = api.model_default_params();
    mp.n_gpu_layers = 0;
    model_ = api.model_load_from_file(model_path.c_str(), mp);
    if (!model_) std::fprintf(stderr, "%s: llama.cpp could not load the model\n", model_path.c_str());
  }
  ~llama_session() {
    if (ctx_) api_.free_context(ctx_);
    if (model_) api_.model_free(model_);
  }
  llama_session(const llama_session&) = delete;
  llama_session& operator=(const llama_session&) = delete;

  bool loaded() const { return model_ != nullptr; }
  int vocabulary() const { return api_.vocab_n_tokens(api_.model_get_vocab(model_)); }
  // Decodes tokens at positions 0, 1, ... in one batch with every position's logits.
  bool decode(const std::vector<llama_token>& tokens) {
    const int T = static_cast<int>(tokens.size());
    llama_context_params cp = api_.context_default_params();
    cp.n_ctx = static_cast<std::uint32_t>(std::max(T, 64));
    cp.n_batch = cp.n_ubatch = cp.n_ctx;
    cp.n_threads = cp.n_threads_batch = 2;
    cp.no_perf = true;
    ctx_ = api_.init_from_model(model_, cp);
    if (!ctx_) {
      std::fprintf(stderr, "%s: llama.cpp could not make a context\n", path_.c_str());
      return false;
    }
    llama_batch b = api_.batch_init(T, 0, 1);
    b.n_tokens = T;
    for (int i = 0; i < T; ++i) {
      b.token[i] = tokens[static_cast<std::size_t>(i)];
      b.pos[i] = i;
      b.n_seq_id[i] = 1;
      b.seq_id[i][0] = 0;
      b.logits[i] = 1;
    }
    const int rc = api_.decode(ctx_, b);
    api_.batch_free(b);
    if (rc != 0) std::fprintf(stderr, "%s: llama_decode returned %d\n", path_.c_str(), rc);
    return rc == 0;
  }
  const float* logits(int position) const { return api_.get_logits_ith(ctx_, position); }

 private:
  const llama_api& api_;
  std::string path_;
  llama_model* model_ = nullptr;
  llama_context* ctx_ = nullptr;
};

int run_logits(const std::string& libdir, const std::string& model_path, const std::string& logits_path) {
  moereg::safetensors_file ref(logits_path);
  const moereg::tensor_info* ids_t = ref.find("input_ids");
  if (!ids_t || ids_t->type != moereg::dtype::I64) throw moereg::error(logits_path + ": no I64 tensor 'input_ids'");
  const auto* ids = reinterpret_cast<const std::int64_t*>(ref.file().data() + ref.data_offset() + ids_t->begin);
  const int T = static_cast<int>(ids_t->numel());
  std::size_t n_ref = 0;
  const float* want = f32_tensor(ref, "logits_f32", n_ref);

  llama_api api(libdir);
  llama_session run(api, model_path);
  if (!run.loaded()) return 1;
  const int V = run.vocabulary();
  if (static_cast<std::size_t>(T) * static_cast<std::size_t>(V) != n_ref) {
    std::fprintf(stderr, "%s: llama.cpp vocabulary %d does not match logits_f32 (%zu values for %d tokens)\n",
                 model_path.c_str(), V, n_ref, T);
    return 1;
  }
  std::vector<llama_token> tokens(static_cast<std::size_t>(T));
  for (int i = 0; i < T; ++i) tokens[static_cast<std::size_t>(i)] = static_cast<llama_token>(ids[i]);
  if (!run.decode(tokens)) return 1;
  float max_ref = 0, max_diff = 0;
  for (std::size_t i = 0; i < n_ref; ++i) max_ref = std::max(max_ref, std::fabs(want[i]));
  int agree = 0;
  std::string disagree;
  for (int t = 0; t < T; ++t) {
    const float* got = run.logits(t);
    const float* w = want + static_cast<std::size_t>(t) * V;
    int ga = 0, wa = 0;
    for (int v = 0; v < V; ++v) {
      if (!std::isfinite(got[v])) max_diff = INFINITY;
      else max_diff = std::max(max_diff, std::fabs(got[v] - w[v]));
      if (got[v] > got[ga]) ga = v;
      if (w[v] > w[wa]) wa = v;
    }
    if (ga == wa || w[ga] >= w[wa] - 1e-4f * max_ref) ++agree;
    else disagree += " " + std::to_string(t) + ":" + std::to_string(ga) + "!=" + std::to_string(wa);
  }
  const double ratio = max_diff / max_ref;
  std::printf("%s: max|diff| %.6g, max|ref| %.6g, ratio %.4f %%, argmax %d/%d%s\n", model_path.c_str(), max_diff, max_ref,
              100 * ratio, agree, T, disagree.c_str());
  return ratio <= 0.05 && agree == T ? 0 : 1;
}

int run_tokens(const std::string& libdir, const std::string& model_path, int T) {
  if (T < 1 || T > 4096) throw moereg::error("T = " + std::to_string(T) + ", expected 1..4096 positions");
  llama_api api(libdir);
  llama_session run(api, model_path);
  if (!run.loaded()) return 1;
  const int V = run.vocabulary();
  std::vector<llama_token> tokens(static_cast<std::size_t>(T));
  for (int i = 0; i < T; ++i) tokens[static_cast<std::size_t>(i)] = static_cast<llama_token>(i % V);
  if (!run.decode(tokens)) return 1;
  bool finite = true, varied = false;
  std::string argmax;
  for (int t = 0; t < T; ++t) {
    const float* got = run.logits(t);
    int a = 0;
    for (int v = 0; v < V; ++v) {
      finite = finite && std::isfinite(got[v]);
      varied = varied || got[v] != got[0];
      if (got[v] > got[a]) a = v;
    }
    argmax += " " + std::to_string(a);
  }
  std::printf("%s: vocabulary %d, %d positions, logits %s, argmax%s\n", model_path.c_str(), V, T,
              !finite ? "NOT FINITE" : varied ? "finite" : "ALL EQUAL", argmax.c_str());
  return finite && varied ? 0 : 1;
}

int run_tokenize(const std::string& libdir, const std::string& model_path, const std::string& text_path) {
  FILE* in = std::fopen(text_path.c_str(), "rb");
  if (!in) throw moereg::error("cannot read " + text_path);
  std::string text;
  char buf[65536];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, in)) > 0;) text.append(buf, n);
  std::fclose(in);
  llama_api api(libdir);
  llama_model_params mp = api.model_default_params();
  mp.n_gpu_layers = 0;
  mp.vocab_only = true;
  llama_model* model = api.model_load_from_file(model_path.c_str(), mp);
  if (!model) {
    std::fprintf(stderr, "%s: llama.cpp could not load the vocabulary\n", model_path.c_str());
    return 1;
  }
  const llama_vocab* vocab = api.model_get_vocab(model);
  std::vector<llama_token> ids(text.size() + 16);
  int n = api.tokenize(vocab, text.data(), static_cast<std::int32_t>(text.size()), ids.data(), static_cast<std::int32_t>(ids.size()), true, true);
  if (n < 0) {
    ids.resize(static_cast<std::size_t>(-n));
    n = api.tokenize(vocab, text.data(), static_cast<std::int32_t>(text.size()), ids.data(), static_cast<std::int32_t>(ids.size()), true, true);
  }
  if (n < 0) throw moereg::error(model_path + ": llama_tokenize failed");
  ids.resize(static_cast<std::size_t>(n));
  std::string back(text.size() * 4 + 256, '\0');
  int m = api.detokenize(vocab, ids.data(), n, back.data(), static_cast<std::int32_t>(back.size()), false, true);
  if (m < 0) throw moereg::error(model_path + ": llama_detokenize failed");
  back.resize(static_cast<std::size_t>(m));
  std::printf("vocabulary %d, %d tokens\n", api.vocab_n_tokens(vocab), n);
  for (int i = 0; i < n; ++i) std::printf("%s%d", i ? " " : "", ids[static_cast<std::size_t>(i)]);
  std::printf("\n%s\n", back.c_str());
  api.model_free(model);
  return 0;
}

int run_to_float(const std::string& libdir, int type, const std::string& in_path, const std::string& out_path) {
  void* lib = dlopen((libdir + "/libggml-base.so").c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) throw moereg::error(std::string("dlopen libggml-base.so: ") + dlerror());
  auto traits = fn<decltype(&ggml_get_type_traits)>(lib, "ggml_get_type_traits")(static_cast<ggml_type>(type));
  if (!traits || !traits->to_float || traits->blck_size <= 0) throw moereg::error("ggml has no to_float for type " + std::to_string(type));
  FILE* in = std::fopen(in_path.c_str(), "rb");
  if (!in) throw moereg::error("cannot read " + in_path);
  std::vector<char> bytes;
  char buf[65536];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, in)) > 0;) bytes.insert(bytes.end(), buf, buf + n);
  std::fclose(in);
  if (bytes.size() % traits->type_size != 0) throw moereg::error(in_path + ": not whole blocks");
  const std::int64_t count = static_cast<std::int64_t>(bytes.size() / traits->type_size) * traits->blck_size;
  std::vector<float> out(static_cast<std::size_t>(count));
  traits->to_float(bytes.data(), out.data(), count);
  FILE* o = std::fopen(out_path.c_str(), "wb");
  if (!o || std::fwrite(out.data(), sizeof(float), out.size(), o) != out.size()) throw moereg::error("cannot write " + out_path);
  std::fclose(o);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 5 && std::strcmp(argv[1], "logits") == 0) return run_logits(argv[2], argv[3], argv[4]);
    if (argc == 5 && std::strcmp(argv[1], "run") == 0) return run_tokens(argv[2], argv[3], std::atoi(argv[4]));
    if (argc == 5 && std::strcmp(argv[1], "tokenize") == 0) return run_tokenize(argv[2], argv[3], argv[4]);
    if (argc == 6 && std::strcmp(argv[1], "to_float") == 0) return run_to_float(argv[2], std::atoi(argv[3]), argv[4], argv[5]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llamacpp_run: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr,
               "usage: llamacpp_run logits LIBDIR MODEL.gguf LOGITS.safetensors\n"
               "       llamacpp_run run LIBDIR MODEL.gguf T\n"
               "       llamacpp_run tokenize LIBDIR MODEL.gguf TEXT.txt\n"
               "       llamacpp_run to_float LIBDIR TYPE IN.bin OUT.bin\n");
  return 2;
}
