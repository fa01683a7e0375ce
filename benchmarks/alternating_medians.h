// Timing for the C++ benchmarks of this folder: each way's calls in groups, the ways taking turns
// (a shared machine's slow spells then fall on every way alike), and each way's median; the
// check that the ways compute the same result, and a flush of the caches between calls.
#ifndef LCNN_BENCHMARKS_ALTERNATING_MEDIANS_H_
#define LCNN_BENCHMARKS_ALTERNATING_MEDIANS_H_

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

// Bytes FlushCaches walks: more than L2 and a 2-core VM's share of L3.
static const int64_t kFlushBytes = 32 << 20;

// Evicts what the caches hold by writing one byte in every line of `buffer` (kFlushBytes).
inline void FlushCaches(std::vector<char>* buffer) {
  for (size_t i = 0; i < buffer->size(); i += 64) (*buffer)[i]++;
}

// Exits naming the way unless call(way) leaves `out` equal to what way 0 left there (relative
// 1e-3), for every one of `ways` ways.
template <class Call>
void CheckWaysAgree(int ways, const char* const* names, const Call& call, const std::vector<float>& out) {
  std::vector<float> expected;
  for (int way = 0; way < ways; ++way) {
    call(way);
    if (way == 0) expected = out;
    for (size_t i = 0; i < out.size(); ++i)
      if (std::abs(out[i] - expected[i]) > 1e-3f * std::max(1.0f, std::abs(expected[i]))) {
        std::fprintf(stderr, "%s: the result differs at %zu\n", names[way], i);
        std::exit(1);
      }
  }
}

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
