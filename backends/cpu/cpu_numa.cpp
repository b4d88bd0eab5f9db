// SPDX-License-Identifier: Apache-2.0
#include "cpu_numa.h"

#include <dirent.h>
#include <sched.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace moereg::cpu {
namespace {

// "0-3,8,10-11" -> {0, 1, 2, 3, 8, 10, 11}; throws on anything else.
std::vector<int> parse_cpulist(const std::string& text, const std::string& where) {
  std::vector<int> cpus;
  std::stringstream ss(text);
  for (std::string part; std::getline(ss, part, ',');) {
    if (part.empty()) continue;
    const std::size_t dash = part.find('-');
    try {
      std::size_t used = 0;
      const int a = std::stoi(part.substr(0, dash), &used);
      if (used != (dash == std::string::npos ? part.size() : dash)) throw std::invalid_argument(part);
      int b = a;
      if (dash != std::string::npos) {
        b = std::stoi(part.substr(dash + 1), &used);
        if (used != part.size() - dash - 1) throw std::invalid_argument(part);
      }
      if (a < 0 || b < a || b >= CPU_SETSIZE) throw std::invalid_argument(part);
      for (int c = a; c <= b; ++c) cpus.push_back(c);
    } catch (const std::logic_error&) {
      throw std::invalid_argument(where + ": '" + part + "' is not a CPU number or range (expected e.g. 0-3,8)");
    }
  }
  return cpus;
}

}  // namespace

numa_topology parse_numa_topology(const std::string& text) {
  numa_topology t;
  std::stringstream ss(text);
  for (std::string node; std::getline(ss, node, ';');) {
    std::vector<int> cpus = parse_cpulist(node, "backend option numa=" + text);
    if (cpus.empty()) throw std::invalid_argument("backend option numa=" + text + ": a node without CPUs (expected e.g. 0-3;4-7)");
    t.node_cpus.push_back(std::move(cpus));
  }
  if (t.node_cpus.empty()) throw std::invalid_argument("backend option numa=" + text + ": no nodes (expected e.g. 0-3;4-7)");
  return t;
}

numa_topology read_numa_topology(const std::string& root) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  const bool masked = ::sched_getaffinity(0, sizeof allowed, &allowed) == 0;
  numa_topology t;
  std::vector<int> ids;
  if (DIR* d = ::opendir(root.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() > 4 && name.compare(0, 4, "node") == 0 && name.find_first_not_of("0123456789", 4) == std::string::npos)
        ids.push_back(std::stoi(name.substr(4)));
    }
    ::closedir(d);
  }
  std::sort(ids.begin(), ids.end());
  for (int id : ids) {
    std::ifstream f(root + "/node" + std::to_string(id) + "/cpulist");
    std::string line;
    if (!f || !std::getline(f, line)) continue;
    std::vector<int> cpus;
    try {
      cpus = parse_cpulist(line, root);
    } catch (const std::invalid_argument&) {
      continue;
    }
    std::vector<int> usable;
    for (int c : cpus)
      if (!masked || CPU_ISSET(c, &allowed)) usable.push_back(c);
    if (!usable.empty()) t.node_cpus.push_back(std::move(usable));
  }
  if (t.node_cpus.empty()) {
    std::vector<int> all;
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (masked && CPU_ISSET(c, &allowed)) all.push_back(c);
    t.node_cpus.push_back(std::move(all));
  }
  return t;
}

numa_plan plan_numa(const numa_topology& topology, int threads, std::int64_t experts) {
  // Thread t takes the t-th CPU of the nodes' CPUs interleaved by rank within each node
  // (node 0's first, node 1's first, ..., node 0's second, ...), wrapping: a pool smaller
  // than the host still spreads over every node.
  std::vector<std::pair<int, int>> slots;  // (cpu, node)
  for (std::size_t k = 0;; ++k) {
    bool any = false;
    for (int n = 0; n < topology.nodes(); ++n)
      if (k < topology.node_cpus[static_cast<std::size_t>(n)].size()) {
        slots.emplace_back(topology.node_cpus[static_cast<std::size_t>(n)][k], n);
        any = true;
      }
    if (!any) break;
  }
  numa_plan p;
  std::vector<int> per_node(static_cast<std::size_t>(std::max(1, topology.nodes())), 0);
  for (int t = 0; t < threads; ++t) {
    const std::pair<int, int> s = slots.empty() ? std::pair<int, int>{-1, 0} : slots[static_cast<std::size_t>(t) % slots.size()];
    p.thread_cpu.push_back(s.first);
    p.thread_node.push_back(s.second);
    ++per_node[static_cast<std::size_t>(s.second)];
  }
  // Experts in contiguous ranges, in proportion to each node's threads (none without one).
  p.expert_begin.assign(per_node.size() + 1, 0);
  std::int64_t before = 0;
  for (std::size_t n = 0; n < per_node.size(); ++n) {
    before += per_node[n];
    p.expert_begin[n + 1] = experts * before / std::max(1, threads);
  }
  return p;
}

int numa_plan::node_of_expert(std::int64_t e) const {
  for (int n = 0; n + 1 < static_cast<int>(expert_begin.size()); ++n)
    if (e < expert_begin[static_cast<std::size_t>(n) + 1]) return n;
  return nodes() - 1;  // the shared expert (index E) goes with the last node
}

}  // namespace moereg::cpu
