// What keeping the dictionary transposed saves the transposed product (the operator's own
// TransposeDictionary, TransposedProduct and TransposedUnit, operators/lookup_conv_transposed.h),
// one thread, one image. The operator keeps D's rows transposed into blocks of B rows with its
// plan, made again only when D changes (since run 62; before, it transposed them on every call,
// each block right before its strips). Ways, per shape (ResNet-18's 14x14 and 7x7 layers, both
// presets), median microseconds:
//   transpose + strips  D transposed into its blocks, then the product (every call before run 62);
//   blocks              the product alone, over the blocks kept (the operator since run 62);
//   mk, rows +0 / +16   the strips reading D given as m x k in place (rows k or k + 16 floats
//                       apart; the padding moves rows 4 KB apart out of L1's same sets).
// Each way's calls run warm (operands left in cache by the call before) and with the caches
// flushed before each call (as in a network, where other layers ran in between).
//
//   MX=$(python -c "import os, mxnet; print(os.path.dirname(mxnet.__file__))")
//   g++ -std=c++17 -O3 -fopenmp -mavx2 -mfma -mavx512f -DLCNN_KERNEL_ISA=Avx512 -I operators
//       -I benchmarks -I $MX/include -o /tmp/dictionary_layout benchmarks/dictionary_layout.cc && /tmp/dictionary_layout
// (one command; an AVX-512 host)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "alternating_medians.h"
#include "lookup_conv_prepared.h"
#include "lookup_conv_transposed.h"

using I = LCNN_KERNEL_ISA;
static const int kCallsPerGroup = 100;
static const int kGroups = 5;                  // per way, alternating
static const int64_t kMkPadding = 16;          // floats added to each row of D (m x k) in the padded way
static const int kWays = 4;
static const char* const kWayNames[kWays] = {"transpose + strips", "blocks", "mk, rows +0", "mk, rows +16"};

// Median microseconds of each way for D (k x m) over an h x h map; flush: caches flushed per call.
static std::vector<double> Measure(int64_t m, int64_t h, int64_t k, bool flush, std::vector<char>* flush_buffer) {
  constexpr int64_t B = kTransposedVectors * I::kLanes, P = I::kTransposedPixels;
  const int64_t wq = h + 2, ldo = (h + 2) * wq, units = (k + B - 1) / B * h * ((h + P - 1) / P);
  std::vector<float> x(m * h * h), d(k * m), s(k * ldo);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 97) * 0.01f;
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<float>(i % 89) * 0.01f;
  std::vector<int> rows(k);
  for (int64_t i = 0; i < k; ++i) rows[i] = static_cast<int>(i);
  std::vector<float> scratch_store, blocks_store;  // aligned as the operator's blocks
  float* scratch = AlignedZeros(&scratch_store, TransposedDictionaryFloats<I>(k, m));
  float* blocks = AlignedZeros(&blocks_store, TransposedDictionaryFloats<I>(k, m));
  TransposeDictionary<I>(d.data(), rows, m, blocks, 1);
  std::vector<std::vector<float>> mk_store(2);
  float* mk[2];
  for (int padded = 0; padded < 2; ++padded) {
    const int64_t ldk = k + padded * kMkPadding;
    mk[padded] = AlignedZeros(&mk_store[padded], m * ldk + B);  // + B: the last row's block reads a whole block
    for (int64_t r = 0; r < k; ++r)
      for (int64_t c = 0; c < m; ++c) mk[padded][c * ldk + r] = d[r * m + c];
  }
  float* out = s.data() + wq + 1;
  const auto call = [&](int way) {
    if (way == 0) {
      TransposeDictionary<I>(d.data(), rows, m, scratch, 1);
      TransposedProduct<I>(scratch, k, m, x.data(), h, h, out, ldo, wq, 1);
    } else if (way == 1) {
      TransposedProduct<I>(blocks, k, m, x.data(), h, h, out, ldo, wq, 1);
    } else {
      const float* dt = way == 1 ? blocks : mk[way - 2];
      const int64_t ldt = way == 1 ? B : k + (way - 2) * kMkPadding, block_floats = way == 1 ? m * B : B;
      for (int64_t unit = 0; unit < units; ++unit) TransposedUnit<I>(dt, ldt, block_floats, k, m, x.data(), h, h, out, ldo, wq, unit);
    }
  };
  CheckWaysAgree(kWays, kWayNames, call, s);
  return AlternatingMedians(kWays, kGroups, kCallsPerGroup, call, [&](int) {
    if (flush) FlushCaches(flush_buffer);
  });
}

int main() {
  const int64_t shapes[][3] = {{512, 7, 1024}, {256, 14, 512}, {512, 7, 128}, {256, 14, 64}};
  std::vector<char> flush_buffer(kFlushBytes);
  printf("m x h x h, k, D KB | caches: %s, %s, %s, %s (us, one thread)\n", kWayNames[0], kWayNames[1], kWayNames[2],
         kWayNames[3]);
  for (const auto& sh : shapes)
    for (int flush = 0; flush < 2; ++flush) {
      const std::vector<double> t = Measure(sh[0], sh[1], sh[2], flush, &flush_buffer);
      printf("%4ld x %2ld x %2ld, k %4ld, %4ld KB | %-7s: %7.1f %7.1f %7.1f %7.1f\n", static_cast<long>(sh[0]),
             static_cast<long>(sh[1]), static_cast<long>(sh[1]), static_cast<long>(sh[2]),
             static_cast<long>(sh[0] * sh[2] * 4 / 1024), flush ? "flushed" : "warm", t[0], t[1], t[2], t[3]);
    }
}
