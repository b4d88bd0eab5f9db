// SPDX-License-Identifier: Apache-2.0
#include "forward_graphs.h"

#include "cuda_moe.h"

namespace moereg::cuda {

bool graph_cache::run(const graph_key& key, cudaStream_t stream, cudaStream_t capture_stream,
                      const std::function<void()>& launch) {
  for (size_t i = 0; i < graphs_.size(); ++i) {
    if (!(graphs_[i].key == key)) continue;
    entry hit = graphs_[i];
    graphs_.erase(graphs_.begin() + static_cast<std::ptrdiff_t>(i));
    graphs_.push_back(hit);
    check(cudaGraphLaunch(hit.exec, stream), "forward graph launch");
    return true;
  }
  // Thread-local mode: another thread's unrelated CUDA calls neither join nor break the capture.
  check(cudaStreamBeginCapture(capture_stream, cudaStreamCaptureModeThreadLocal), "forward graph capture");
  cudaGraph_t graph = nullptr;
  try {
    launch();
  } catch (...) {
    cudaStreamEndCapture(capture_stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw;
  }
  check(cudaStreamEndCapture(capture_stream, &graph), "forward graph capture");
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  check(made, "forward graph instantiate");
  if (graphs_.size() >= capacity) {
    cudaGraphExecDestroy(graphs_.front().exec);
    graphs_.erase(graphs_.begin());
  }
  graphs_.push_back({key, exec});
  check(cudaGraphLaunch(exec, stream), "forward graph launch");
  return false;
}

void graph_cache::clear() {
  for (auto& g : graphs_) cudaGraphExecDestroy(g.exec);
  graphs_.clear();
}

}  // namespace moereg::cuda
