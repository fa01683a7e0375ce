// The machine's read bandwidth from memory, for benchmarks/machine.py: OpenMP threads
// (OMP_NUM_THREADS) each sum their share of a buffer much larger than any cache with AVX2
// loads into eight independent accumulators; prints GB/s, the best of a few passes. A network
// whose weights exceed the caches reads them at this rate once per call at batch 1.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

static const size_t kBufferBytes = size_t(512) << 20;  // 16x a 32 MB last-level cache
static const int kPasses = 5;

int main() {
  const size_t floats = kBufferBytes / sizeof(float);
  const size_t blocks = floats / 64;  // eight registers of eight floats per step
  std::vector<float> buffer(blocks * 64);
#pragma omp parallel for schedule(static)  // each thread first touches (and so places) its share
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = 1e-9f * static_cast<float>(i % 1000);
  double best = 1e30, checksum = 0;
  for (int pass = 0; pass < kPasses; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    double total = 0;
#pragma omp parallel reduction(+ : total)
    {
      __m256 acc[8] = {};  // eight chains, kept in registers (the loop fully unrolled)
#pragma omp for schedule(static)
      for (size_t b = 0; b < blocks; ++b) {
        const float* p = buffer.data() + b * 64;
#pragma GCC unroll 8
        for (int r = 0; r < 8; ++r) acc[r] = _mm256_add_ps(acc[r], _mm256_loadu_ps(p + 8 * r));
      }
      float lanes[8];
      _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])),
                                            _mm256_add_ps(_mm256_add_ps(acc[4], acc[5]), _mm256_add_ps(acc[6], acc[7]))));
      for (float lane : lanes) total += lane;
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    checksum += total;
  }
  std::printf("%.2f GB/s (%d threads, checksum %g)\n", buffer.size() * sizeof(float) / best / 1e9,
              omp_get_max_threads(), checksum);
  return 0;
}
