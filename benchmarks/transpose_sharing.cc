// The transposed product (the operator's own TransposedProduct, operators/lookup_conv_transposed.h)
// at two threads on one image, with D transposed once and shared by the threads, or by each
// thread for itself (Plan::transposed_per_thread, kPerThreadTransposeMaxBytes). Shared, each
// thread reads the lines of D^T the other one wrote, and the next call's transpose takes them
// back. Prints, per shape (ResNet-18's 14x14 and 7x7 layers, both presets, and a 13x13 map of
// 64 rows), the median microseconds of each way and the ratio, calls in alternating groups.
//
//   MX=$(python -c "import os, mxnet; print(os.path.dirname(mxnet.__file__))")
//   g++ -std=c++17 -O3 -fopenmp -mavx2 -mfma -mavx512f -DLCNN_KERNEL_ISA=Avx512 -I operators
//       -I benchmarks -I $MX/include -o /tmp/transpose_sharing benchmarks/transpose_sharing.cc && /tmp/transpose_sharing
// (one command; an AVX-512 host)
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "alternating_medians.h"
#include "lookup_conv_prepared.h"
#include "lookup_conv_transposed.h"

using I = LCNN_KERNEL_ISA;
static const int kThreads = 2;
static const int kCallsPerGroup = 200;
static const int kGroups = 5;  // per way, alternating

// Median microseconds of the product of D (k x m) over an h x h map, shared (0) and per thread (1).
static std::vector<double> Measure(int64_t m, int64_t h, int64_t k) {
  const int64_t wq = h + 2, ldo = (h + 2) * wq;
  std::vector<float> x(m * h * h), d(k * m), s(k * ldo);
  std::vector<float> dt;
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 97) * 0.01f;
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<float>(i % 89) * 0.01f;
  std::vector<int> rows(k);
  for (int64_t i = 0; i < k; ++i) rows[i] = static_cast<int>(i);
  float* scratch = AlignedZeros(&dt, TransposedScratchFloats<I>(k, m, true, kThreads));  // as the operator's
  return AlternatingMedians(2, kGroups, kCallsPerGroup, [&](int way) {
    TransposedProduct<I>(d.data(), rows, m, x.data(), h, h, s.data() + wq + 1, ldo, wq, scratch, way == 1, kThreads);
  }, [](int) {});
}

int main() {
  omp_set_dynamic(0);
  const int64_t shapes[][3] = {{256, 14, 64}, {512, 7, 128}, {256, 14, 512}, {512, 7, 1024}, {384, 13, 64}};
  printf("m x h x h, k, D^T KB: shared us, per thread us, per thread / shared (two threads)\n");
  for (const auto& sh : shapes) {
    const std::vector<double> t = Measure(sh[0], sh[1], sh[2]);
    printf("%4ld x %2ld x %2ld, k %4ld, %5ld KB: %7.1f %7.1f  %.2f\n", static_cast<long>(sh[0]), static_cast<long>(sh[1]),
           static_cast<long>(sh[1]), static_cast<long>(sh[2]),
           static_cast<long>(TransposedDictionaryFloats<I>(sh[2], sh[0]) * 4 / 1024), t[0], t[1], t[1] / t[0]);
  }
}
