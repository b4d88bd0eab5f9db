// SPDX-License-Identifier: Apache-2.0
#include "job_partition.h"

#include <algorithm>

namespace moereg::app {

std::vector<int> assign_shards(const std::vector<shard_plan>& shards, const std::vector<bool>& complete, int ranks) {
  std::vector<int> owner(shards.size(), -1);
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < shards.size(); ++i)
    if (i >= complete.size() || !complete[i]) order.push_back(i);
  if (shards.size() == 1) {
    if (!order.empty()) owner[0] = 0;
    return owner;
  }
  // Largest first (then plan order) is the classic greedy for balancing: within 4/3 of the best.
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return shards[a].bytes > shards[b].bytes; });
  std::vector<std::uint64_t> load(static_cast<std::size_t>(std::max(ranks, 1)), 0);
  for (std::size_t i : order) {
    const auto least = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = static_cast<int>(least);
    load[least] += std::max<std::uint64_t>(shards[i].bytes, 1);
  }
  return owner;
}

}  // namespace moereg::app
