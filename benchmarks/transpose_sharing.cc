// How the transposed product (the operator's own TransposedProduct, operators/lookup_conv_transposed.h)
// shares D's transpose between threads, against the general product (DictionaryProduct) it
// replaces. Ways, on one image:
//   blocks      each thread transposes its share of D's blocks of rows, each right before the
//               block's strips (what the operator does when there are at least as many blocks as
//               threads);
//   each all    each thread transposes all of D for itself and takes its share of the strips
//               (Plan::transposed_per_thread: fewer blocks than threads);
//   general     the general product's strips of columns over D as it comes.
// Prints, per shape (ResNet-18's 14x14 and 7x7 layers, both presets, and a 13x13 map of 64
// rows), thread count, and caches warm (operands left by the call before) or flushed before each
// call (as in a network, where other layers ran in between), each way's median microseconds.
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
#include "lookup_conv_stages.h"
#include "lookup_conv_transposed.h"

using I = LCNN_KERNEL_ISA;
static const int kMaxThreads = 2;
static const int kCallsPerGroup = 100;
static const int kGroups = 5;                  // per way, alternating
static const int kWays = 3;
static const char* const kWayNames[kWays] = {"blocks", "each all", "general"};

// Median microseconds of each way for D (k x m) over an h x h map at `threads` threads.
static std::vector<double> Measure(int64_t m, int64_t h, int64_t k, int threads, bool flush,
                                   std::vector<char>* flush_buffer) {
  const int64_t wq = h + 2, ldo = (h + 2) * wq;
  std::vector<float> x(m * h * h), d(k * m), s(k * ldo);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 97) * 0.01f;
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<float>(i % 89) * 0.01f;
  std::vector<int> rows(k);
  for (int64_t i = 0; i < k; ++i) rows[i] = static_cast<int>(i);
  std::vector<float> scratch_store, packed(threads * PackedFloats<I>(m, false));
  float* scratch = AlignedZeros(&scratch_store, TransposedScratchFloats<I>(k, m, true, threads));  // (the larger)
  float* out = s.data() + wq + 1;
  const auto call = [&](int way) {
    if (way < 2) return TransposedProduct<I>(d.data(), rows, m, x.data(), h, h, out, ldo, wq, scratch, way == 1, threads);
    DictionaryProduct<I>({d.data(), &rows, m, x.data(), h * h, h * h, out, ldo, h, wq}, threads, packed.data());
  };
  CheckWaysAgree(kWays, kWayNames, call, s);
  return AlternatingMedians(kWays, kGroups, kCallsPerGroup, call, [&](int) {
    if (flush) FlushCaches(flush_buffer);
  });
}

int main() {
  omp_set_dynamic(0);
  const int64_t shapes[][3] = {{256, 14, 64}, {512, 7, 128}, {256, 14, 512}, {512, 7, 1024}, {384, 13, 64}};
  std::vector<char> flush_buffer(kFlushBytes);
  printf("m x h x h, k, D KB, threads | caches: %s, %s, %s (median us)\n", kWayNames[0], kWayNames[1], kWayNames[2]);
  for (int threads = 1; threads <= kMaxThreads; ++threads)
    for (const auto& sh : shapes)
      for (int flush = 0; flush < 2; ++flush) {
        const std::vector<double> t = Measure(sh[0], sh[1], sh[2], threads, flush, &flush_buffer);
        printf("%4ld x %2ld x %2ld, k %4ld, %4ld KB, %d | %-7s: %7.1f %7.1f %7.1f\n", static_cast<long>(sh[0]),
               static_cast<long>(sh[1]), static_cast<long>(sh[1]), static_cast<long>(sh[2]),
               static_cast<long>(sh[0] * sh[2] * 4 / 1024), threads, flush ? "flushed" : "warm", t[0], t[1], t[2]);
      }
}
