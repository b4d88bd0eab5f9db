// SPDX-License-Identifier: Apache-2.0
// forward_graphs.h - a layer's kernel-path forwards captured as CUDA graphs and replayed
// (backend option graphs=on). A forward on the kernels launches 7 to 11 small kernels whose
// launch gaps, not the weight bytes, dominate decode (T = 1 to 16); one cudaGraphLaunch
// replaces them. A graph bakes in every pointer and size of the pass, so it is kept per
// (token count, input, ids, weights, output) and replayed only for exactly those; a new
// buffer is a new capture (tens of microseconds), which is why the option is off by default
// and meant for callers that reuse their buffers (engines, benchmarks, PyTorch static graphs).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <vector>

namespace moereg::cuda {

// What one captured pass depends on besides the layer: its sizes, dtypes and buffers.
struct graph_key {
  int tokens = 0;
  const void* x = nullptr;
  const void* ids = nullptr;
  const void* weights = nullptr;
  void* out = nullptr;
  bool x_bf16 = false, ids_i64 = false;
  bool operator==(const graph_key& o) const {
    return tokens == o.tokens && x == o.x && ids == o.ids && weights == o.weights && out == o.out &&
           x_bf16 == o.x_bf16 && ids_i64 == o.ids_i64;
  }
};

class graph_cache {
 public:
  static constexpr size_t capacity = 32;  // least recently used graphs beyond this are dropped
  graph_cache() = default;
  ~graph_cache() { clear(); }
  graph_cache(const graph_cache&) = delete;
  graph_cache& operator=(const graph_cache&) = delete;

  // Launches the graph for `key` on `stream`; on a miss, first captures `launch` on
  // `capture_stream` (launch must only enqueue work on capture_stream: no synchronization,
  // no allocation). Returns true when it replayed a graph captured by an earlier call. On a
  // failed capture nothing is cached, capture_stream leaves capture mode, and the error is thrown.
  bool run(const graph_key& key, cudaStream_t stream, cudaStream_t capture_stream, const std::function<void()>& launch);

  // Drops every graph (their pointers into a workspace that is being replaced go stale).
  void clear();
  size_t size() const { return graphs_.size(); }

 private:
  struct entry {
    graph_key key;
    cudaGraphExec_t exec;
  };
  std::vector<entry> graphs_;  // most recently used last
};

}  // namespace moereg::cuda
