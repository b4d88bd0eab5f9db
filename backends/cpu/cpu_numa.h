// SPDX-License-Identifier: Apache-2.0
// cpu_numa.h - NUMA placement of the experts: which CPUs form each node, which node each
// pool thread works for, and which node each expert belongs to. On a host with several
// nodes, each node's threads take the work items of its own experts first (stealing from
// other nodes only when theirs run out), and the copies the backend makes of the experts
// (the tile-ordered bf16 copy, the online-quantized codes) are written by the threads of
// the expert's node, so first touch puts their pages in that node's memory. Weights read in
// place from the host's mapped file stay wherever the page cache put them. On one node
// nothing changes: no pinning, one shared queue.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moereg::cpu {

struct numa_topology {
  std::vector<std::vector<int>> node_cpus;  // per node, its CPUs (only those this process may use)
  int nodes() const { return static_cast<int>(node_cpus.size()); }
};

// The host's nodes from sysfs (root: /sys/devices/system/node), restricted to the CPUs of
// this process's affinity mask; empty nodes are dropped. No sysfs: one node of all CPUs.
numa_topology read_numa_topology(const std::string& root = "/sys/devices/system/node");

// An injected topology, "0-3;4-7": nodes separated by ';', each a cpulist ("0-3,8,10-11").
// Throws std::invalid_argument naming the text.
numa_topology parse_numa_topology(const std::string& text);

// How `threads` pool threads and `experts` experts spread over the nodes: thread t runs on
// CPU cpus[t] (the nodes' CPUs in order, wrapping) in node thread_node[t]; node n owns the
// experts [expert_begin[n], expert_begin[n + 1]), in proportion to its threads.
struct numa_plan {
  std::vector<int> thread_cpu, thread_node;
  std::vector<std::int64_t> expert_begin;
  int nodes() const { return static_cast<int>(expert_begin.size()) - 1; }
  int node_of_expert(std::int64_t e) const;
};
numa_plan plan_numa(const numa_topology& topology, int threads, std::int64_t experts);

}  // namespace moereg::cpu
