// How fast two threads pass data to each other, for benchmarks/machine.py: each of two OpenMP
// threads writes its half of a buffer, then, after a barrier, reads either its own half or the
// other thread's. Prints the time of a round that reads the other's half over one that reads its
// own (median of alternating groups of rounds).
//
// Why: on the 2-core VMs the project is measured on, the two vCPUs now and then pass data the
// long way (most likely placed on cores without a common last-level cache): this ratio is
// 1.0-1.2 normally and 2.3-3.2 then (Zen 5 VM, 2026-12-04, both states within a minute), and
// an LCNN network at two threads then runs about as fast as at one.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

// Two halves of 256 KB: well inside one core's L2 (1 MB on the hosts measured), and a third of a
// ResNet-18 stage-1 activation (56x56x64 floats, 800 KB).
static const size_t kBufferBytes = size_t(512) << 10;
static const int kRoundsPerGroup = 200;
static const int kGroups = 7;  // per kind of round, alternating

int main() {
  std::vector<float> buffer(kBufferBytes / sizeof(float), 1.f);
  const size_t half = buffer.size() / 2;
  volatile float sink = 0;
  std::vector<double> ratios;
  for (int group = 0; group < kGroups; ++group) {
    double seconds[2];
    for (int cross = 0; cross < 2; ++cross) {
      const auto start = std::chrono::steady_clock::now();
      for (int round = 0; round < kRoundsPerGroup; ++round) {
#pragma omp parallel num_threads(2)
        {
          const int t = omp_get_thread_num();
          float* mine = buffer.data() + t * half;
          for (size_t i = 0; i < half; ++i) mine[i] += 1.f;
#pragma omp barrier
          const float* read = buffer.data() + (cross ? 1 - t : t) * half;
          float sum = 0;
          for (size_t i = 0; i < half; ++i) sum += read[i];
          sink = sink + sum;
        }
      }
      seconds[cross] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    ratios.push_back(seconds[1] / seconds[0]);
  }
  std::nth_element(ratios.begin(), ratios.begin() + kGroups / 2, ratios.end());
  std::printf("%.2f other thread's half over own half\n", ratios[kGroups / 2]);
  return 0;
}
