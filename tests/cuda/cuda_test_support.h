// SPDX-License-Identifier: Apache-2.0
// cuda_test_support.h - what the CUDA backend tests share: the backend loaded with dlopen as
// the host loads it (backend_api), layers made through its create (with the backend options
// set_option holds), random layers and a float64 reference of the MoE layer to check them
// against, and the fixtures directory ($MOEREG_FIXTURES_DIR on the GPU machine).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moereg/abi/moereg_backend.h"

// The host side of a status, as the tests need it: code plus message.
struct moereg_status {
  int code;
  std::string message;
};

namespace moereg::test {
// The fixtures directory: $MOEREG_FIXTURES_DIR when set (the GPU machine carries a copy),
// else the configured path.
std::string fixture(const std::string& relative);
}  // namespace moereg::test

namespace moereg::test::cuda {

// Takes a status; returns "" for success, else "code N: message".
std::string take(moereg_status* s);

// The CUDA backend's table ($MOEREG_CUDA_BACKEND, else the built library); null (with a test
// failure) when it does not load.
const moereg_backend_api* backend_api();

struct handle_deleter {
  void operator()(moereg_backend* b) const { backend_api()->destroy(b); }
};
using handle = std::unique_ptr<moereg_backend, handle_deleter>;

// Backend options (tiles, cublas) every create below passes, through create_with_options.
void set_option(const std::string& key, const std::string& value);
void clear_option(const std::string& key);

// Creates a layer; a failure is a test failure unless `error` is given (it receives the message).
handle create(const moereg_moe_weights& w, const moereg_routing_params* r, std::string* error = nullptr);

// describe() of a layer as a string.
std::string describe(moereg_backend* h);

double rel_l2(const std::vector<float>& a, const std::vector<double>& ref);
// Largest |a - b| over the largest |b|; infinite when either holds a non-finite value.
double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b);

// Routed experts only: w13 [E, 2I, H] and w2 [E, H, I] of one dtype, no scales, no shared expert.
moereg_moe_weights experts_view(void* w13, void* w2, int32_t dtype, long long E, long long H, long long I);
uint16_t to_bf16(float f);
float from_bf16(uint16_t b);

// float64 MoE reference on bf16 weights (upcast exactly) and the given x.
std::vector<double> reference(const std::vector<float>& x, const std::vector<int64_t>& ids,
                              const std::vector<float>& wts, const std::vector<uint16_t>& w13,
                              const std::vector<uint16_t>& w2, int T, int H, int I, int K,
                              const std::vector<uint16_t>* sw13 = nullptr, const std::vector<uint16_t>* sw2 = nullptr,
                              int Is = 0, const std::vector<uint16_t>* sgate = nullptr);

// A layer of random bf16 experts (normal, scaled by 1/sqrt(fan-in)), optionally with a shared
// expert (Is > 0) and its gate.
struct random_layer {
  int E, H, I, K, Is;
  bool gate;
  std::vector<uint16_t> w13, w2, sw13, sw2, sg;
  random_layer(int e, int h, int i, int k, int is, bool g, uint32_t seed);
  moereg_moe_weights view();
};

// Random routing for T tokens: distinct ids per token, weights in [0.1, 1). balanced: token t
// takes experts (t*K + k) mod E; otherwise skewed loads (expert 0 hit by a third of the tokens).
struct random_tokens {
  std::vector<float> x;         // [T, H] (already rounded to bf16 when made with bf16_x)
  std::vector<uint16_t> xb;     // [T, H] bf16 bits when bf16_x
  std::vector<int32_t> ids;     // [T, K]
  std::vector<int64_t> ids64;
  std::vector<float> wts;
  random_tokens(int T, int H, int E, int K, uint32_t seed, bool bf16_x = false, bool balanced = false);
};

// Forward of `tokens` through layer h (host views); the output, NaN-filled on failure.
std::vector<float> forward(moereg_backend* h, const random_tokens& tokens, int T, int H, int K);

// Runs T random tokens through a layer made from L; returns relative L2 against float64.
double run_random(random_layer& L, int T, uint32_t seed, bool bf16_x = false, std::string* json = nullptr,
                  bool balanced = false);

}  // namespace moereg::test::cuda
