// SPDX-License-Identifier: Apache-2.0
// Backend option graphs=on: kernel-path forwards captured as CUDA graphs and replayed. A replay
// must compute what an eager pass computes on the data the buffers hold at replay time (not at
// capture), a new token count or buffer must capture anew, a grown workspace must drop the
// graphs that point into the old one, and the cuBLAS path (which syncs) must stay eager.
// Needs an sm_90 GPU; registered with ctest only when MOEREG_CUDA_TESTS=ON.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "cuda_test_support.h"
#include "moereg/abi/moereg_cuda_stream.h"
#include "test_cpu_fixture_util.h"

namespace {

using moereg::test::make_view;
using namespace moereg::test::cuda;

std::string last_graph(moereg_backend* h) {
  const std::string json = describe(h);
  const std::string key = "\"last_graph\":\"";
  const size_t at = json.find(key);
  if (at == std::string::npos) return "(no last_graph in " + json + ")";
  return json.substr(at + key.size(), json.find('"', at + key.size()) - at - key.size());
}

// Device views of one batch's buffers (for calls the test makes itself).
struct batch_views {
  moereg_tensor_view x, ids, wts, out;
};

// Device buffers of one token batch, reused across calls as an engine reuses its buffers.
struct device_batch {
  const moereg_backend_api* api;
  moereg_backend* owner;
  int T, H, K;
  void *x = nullptr, *ids = nullptr, *wts = nullptr, *out = nullptr;
  device_batch(const moereg_backend_api* a, moereg_backend* o, int t, int h, int k) : api(a), owner(o), T(t), H(h), K(k) {
    EXPECT_EQ(take(api->alloc(owner, size_t(T) * H * 4, &x)), "");
    EXPECT_EQ(take(api->alloc(owner, size_t(T) * K * 4, &ids)), "");
    EXPECT_EQ(take(api->alloc(owner, size_t(T) * K * 4, &wts)), "");
    EXPECT_EQ(take(api->alloc(owner, size_t(T) * H * 4, &out)), "");
  }
  ~device_batch() {
    for (void* p : {x, ids, wts, out}) api->free(owner, p);
  }
  void load(const random_tokens& r) {
    EXPECT_EQ(take(api->copy(owner, x, r.x.data(), r.x.size() * 4, 0)), "");
    EXPECT_EQ(take(api->copy(owner, ids, r.ids.data(), r.ids.size() * 4, 0)), "");
    EXPECT_EQ(take(api->copy(owner, wts, r.wts.data(), r.wts.size() * 4, 0)), "");
  }
  batch_views views() const {
    batch_views v{make_view(x, MOEREG_DTYPE_F32, {T, H}), make_view(ids, MOEREG_DTYPE_I32, {T, K}),
                  make_view(wts, MOEREG_DTYPE_F32, {T, K}), make_view(out, MOEREG_DTYPE_F32, {T, H})};
    for (auto* p : {&v.x, &v.ids, &v.wts, &v.out}) p->memory = MOEREG_MEMORY_DEVICE;
    return v;
  }
  std::vector<float> result(moereg_backend* h) {
    std::vector<float> host(size_t(T) * H, NAN);
    EXPECT_EQ(take(api->synchronize(h)), "");
    EXPECT_EQ(take(api->copy(owner, host.data(), out, host.size() * 4, 1)), "");
    return host;
  }
  std::vector<float> run(moereg_backend* h) {
    batch_views v = views();
    moereg_tensor_view xv = v.x, iv = v.ids, wv = v.wts, ov = v.out;
    std::vector<float> host(size_t(T) * H, NAN);
    EXPECT_EQ(take(api->forward(h, &xv, &iv, &wv, &ov)), "");
    // Device-view calls are asynchronous on h's stream; the copy runs on owner's.
    EXPECT_EQ(take(api->synchronize(h)), "");
    EXPECT_EQ(take(api->copy(owner, host.data(), out, host.size() * 4, 1)), "");
    return host;
  }
};

// A layer made with one backend option set (eager and graphed twins of the same weights).
handle create_with(const moereg_moe_weights& w, const char* key, const char* value) {
  set_option(key, value);
  handle h = create(w, nullptr);
  clear_option(key);
  return h;
}

TEST(CudaGraphs, ReplaysComputeWhatEagerPassesComputeOnTheCurrentData) {
  ASSERT_NE(backend_api(), nullptr);
  random_layer L(16, 136, 40, 4, 24, true, 5);
  handle eager = create(L.view(), nullptr), graphed = create_with(L.view(), "graphs", "on");
  ASSERT_TRUE(eager && graphed);
  EXPECT_NE(describe(graphed.get()).find("\"graphs\":\"on\""), std::string::npos) << describe(graphed.get());

  for (int T : {1, 7, 200}) {
    device_batch b(backend_api(), eager.get(), T, L.H, L.K);
    for (uint32_t seed = 1; seed <= 3; ++seed) {
      random_tokens r(T, L.H, L.E, L.K, 100 * T + seed);
      b.load(r);  // new contents, same buffers: a replay must read these, not the captured ones
      const std::vector<float> want = b.run(eager.get());
      const std::vector<float> got = b.run(graphed.get());
      EXPECT_EQ(last_graph(graphed.get()), seed == 1 ? "captured" : "replayed") << "T=" << T << " seed " << seed;
      EXPECT_LE(max_rel_diff(got, want), 1e-6) << "T=" << T << " seed " << seed;
      const auto ref = reference(r.x, r.ids64, r.wts, L.w13, L.w2, T, L.H, L.I, L.K, &L.sw13, &L.sw2, L.Is, &L.sg);
      EXPECT_LT(rel_l2(got, ref), 1e-2) << "T=" << T << " seed " << seed;
    }
  }
  // Host views go through the layer's own staging buffers: the second call with the same
  // token count replays.
  random_tokens r(5, L.H, L.E, L.K, 77);
  const std::vector<float> first = forward(graphed.get(), r, 5, L.H, L.K);
  const std::vector<float> second = forward(graphed.get(), r, 5, L.H, L.K);
  EXPECT_EQ(last_graph(graphed.get()), "replayed");
  EXPECT_LE(max_rel_diff(second, first), 1e-6);
  EXPECT_LE(max_rel_diff(second, forward(eager.get(), r, 5, L.H, L.K)), 1e-6);
}

// A larger T grows the workspace; the graphs that point into the old one must go, and a
// replay afterwards of the small T (recaptured) must still be right.
TEST(CudaGraphs, AGrownWorkspaceRecapturesInsteadOfReplayingStalePointers) {
  ASSERT_NE(backend_api(), nullptr);
  random_layer L(8, 64, 32, 2, 0, false, 9);
  handle eager = create(L.view(), nullptr), graphed = create_with(L.view(), "graphs", "on");
  ASSERT_TRUE(eager && graphed);
  device_batch small(backend_api(), eager.get(), 3, L.H, L.K);
  random_tokens r(3, L.H, L.E, L.K, 3);
  small.load(r);
  small.run(graphed.get());
  EXPECT_EQ(last_graph(graphed.get()), "captured");
  {
    device_batch big(backend_api(), eager.get(), 4000, L.H, L.K);  // > the workspace's doubling
    big.load(random_tokens(4000, L.H, L.E, L.K, 4));
    EXPECT_LE(max_rel_diff(big.run(graphed.get()), big.run(eager.get())), 1e-6);
  }
  const std::vector<float> got = small.run(graphed.get());
  EXPECT_EQ(last_graph(graphed.get()), "captured");
  EXPECT_LE(max_rel_diff(got, small.run(eager.get())), 1e-6);
}

// The cuBLAS path reads the expert sizes back to the host: it cannot be captured and runs
// eagerly, saying so.
TEST(CudaGraphs, TheCublasPathStaysEagerAndSaysWhy) {
  ASSERT_NE(backend_api(), nullptr);
  random_layer L(4, 64, 32, 2, 0, false, 11);
  set_option("graphs", "on");
  set_option("tiles", "cublas");
  std::string err;
  handle h = create(L.view(), nullptr, &err);
  clear_option("tiles");
  clear_option("graphs");
  ASSERT_TRUE(h) << err;
  if (describe(h.get()).find("\"gemm_large\":\"none") != std::string::npos) GTEST_SKIP() << "libcublas.so.13 not loadable";
  random_tokens r(64, L.H, L.E, L.K, 1);
  forward(h.get(), r, 64, L.H, L.K);
  EXPECT_NE(last_graph(h.get()).find("none: the cuBLAS path"), std::string::npos) << describe(h.get());
}

// The stream extension: a layer set on the caller's stream is captured into the caller's own
// graph (as vLLM or PyTorch capture a model), and the graph's replays compute what eager
// forwards compute on the data the buffers then hold. Sizes that would take the cuBLAS path
// run on the kernels inside a capture; what a capture cannot hold is refused by name.
TEST(CudaStream, ACallerCapturesTheForwardIntoItsOwnGraph) {
  ASSERT_NE(backend_api(), nullptr);
  const auto* api = backend_api();
  const auto* ext = static_cast<const moereg_cuda_stream_api*>(api->get_extension(MOEREG_CUDA_STREAM_EXTENSION));
  ASSERT_NE(ext, nullptr);
  ASSERT_GE(ext->version, 1u);
  EXPECT_EQ(api->get_extension("no such extension"), nullptr);
  cudaStream_t st = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), cudaSuccess);
  // E = 4, K = 2: 600 tokens are 300 rows per expert, a cuBLAS size when eager.
  random_layer L(4, 64, 32, 2, 16, true, 13);
  handle eager = create(L.view(), nullptr), h = create(L.view(), nullptr);
  handle kernels = create_with(L.view(), "cublas", "off");  // what a capture runs at every size
  ASSERT_TRUE(eager && h && kernels);
  ASSERT_EQ(take(ext->set_stream(h.get(), st)), "");
  for (int T : {3, 600}) {
    device_batch b(api, eager.get(), T, L.H, L.K);
    b.load(random_tokens(T, L.H, L.E, L.K, T));
    // Uncaptured first: sizes the workspace; on the caller's stream it equals the own-stream layer.
    const std::vector<float> want0 = b.run(eager.get());
    EXPECT_LE(max_rel_diff(b.run(h.get()), want0), 1e-6) << "T=" << T;

    batch_views v = b.views();
    cudaGraph_t graph = nullptr;
    ASSERT_EQ(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), cudaSuccess);
    const std::string captured = take(api->forward(h.get(), &v.x, &v.ids, &v.wts, &v.out));
    ASSERT_EQ(cudaStreamEndCapture(st, &graph), cudaSuccess);
    ASSERT_EQ(captured, "") << "T=" << T;
    EXPECT_NE(describe(h.get()).find("\"last_graph\":\"inside the caller's capture\""), std::string::npos);
    cudaGraphExec_t exec = nullptr;
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    for (uint32_t seed = 1; seed <= 2; ++seed) {
      b.load(random_tokens(T, L.H, L.E, L.K, 1000 * seed + T));
      const std::vector<float> want = b.run(kernels.get());
      ASSERT_EQ(cudaGraphLaunch(exec, st), cudaSuccess);
      EXPECT_LE(max_rel_diff(b.result(h.get()), want), 1e-6) << "T=" << T << " replay " << seed;
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  // Refused inside a capture: more tokens than the workspace holds, and host views.
  {
    device_batch big(api, eager.get(), 5000, L.H, L.K);
    batch_views v = big.views();
    cudaGraph_t graph = nullptr;
    ASSERT_EQ(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), cudaSuccess);
    const std::string err = take(api->forward(h.get(), &v.x, &v.ids, &v.wts, &v.out));
    cudaStreamEndCapture(st, &graph);
    if (graph) cudaGraphDestroy(graph);
    EXPECT_NE(err.find("cannot grow there; run one uncaptured forward with at least 5000 tokens first"), std::string::npos)
        << err;
  }
  {
    random_tokens r(2, L.H, L.E, L.K, 2);
    std::vector<float> out(size_t(2) * L.H);
    moereg_tensor_view xv = make_view(r.x.data(), MOEREG_DTYPE_F32, {2, L.H});
    moereg_tensor_view iv = make_view(r.ids.data(), MOEREG_DTYPE_I32, {2, L.K});
    moereg_tensor_view wv = make_view(r.wts.data(), MOEREG_DTYPE_F32, {2, L.K});
    moereg_tensor_view ov = make_view(out.data(), MOEREG_DTYPE_F32, {2, L.H});
    cudaGraph_t graph = nullptr;
    ASSERT_EQ(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), cudaSuccess);
    const std::string err = take(api->forward(h.get(), &xv, &iv, &wv, &ov));
    cudaStreamEndCapture(st, &graph);
    if (graph) cudaGraphDestroy(graph);
    EXPECT_NE(err.find("host-memory views while the layer's stream is being captured"), std::string::npos) << err;
  }
  // Back on its own stream, the layer still computes.
  ASSERT_EQ(take(ext->set_stream(h.get(), nullptr)), "");
  random_tokens r(5, L.H, L.E, L.K, 5);
  EXPECT_LE(max_rel_diff(forward(h.get(), r, 5, L.H, L.K), forward(eager.get(), r, 5, L.H, L.K)), 1e-6);
  h.reset();
  cudaStreamDestroy(st);
}

}  // namespace
