// Timing for the C++ benchmarks of this folder: each way's calls in groups, the ways taking turns
// (a shared machine's slow spells then fall on every way alike), and each way's median.
#ifndef LCNN_BENCHMARKS_ALTERNATING_MEDIANS_H_
#define LCNN_BENCHMARKS_ALTERNATING_MEDIANS_H_

#include <algorithm>
#include <chrono>
#include <vector>

// Median microseconds of call(way) for each of `ways` ways: `groups` rounds in which every way
// makes calls_per_group calls in turn; before(way) runs before each call, outside the clock.
template <class Call, class Before>
std::vector<double> AlternatingMedians(int ways, int groups, int calls_per_group, const Call& call,
                                       const Before& before) {
  std::vector<std::vector<double>> times(ways);
  for (int group = 0; group < groups; ++group)
    for (int way = 0; way < ways; ++way)
      for (int c = 0; c < calls_per_group; ++c) {
        before(way);
        const auto start = std::chrono::steady_clock::now();
        call(way);
        times[way].push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
      }
  std::vector<double> medians;
  for (auto& t : times) {
    std::sort(t.begin(), t.end());
    medians.push_back(t[t.size() / 2]);
  }
  return medians;
}

#endif  // LCNN_BENCHMARKS_ALTERNATING_MEDIANS_H_
