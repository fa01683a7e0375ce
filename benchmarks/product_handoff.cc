// The dictionary product (the operator's own DictionaryProduct, operators/lookup_conv_stages.h)
// on x that other threads have just written, as in a network, where x is the previous layer's
// output. The product runs on `threads` OpenMP threads over D (k x m) and x (m x h*w) into S's
// padded rows (a stride-1 layer's product_into_s), and before every timed call x is either left
// alone or rewritten:
//   kept      nobody writes x (x as the previous call left it, as in a harness)
//   channels  each of two threads rewrites half of x's rows (the lookups split by channels)
//   columns   each of two threads rewrites half of every row (a spatial split)
//   other     thread 1 alone rewrites all of x (at one thread: the thread that does not read it)
//   mine      thread 0 alone rewrites all of x (at one thread: the thread that reads it)
// Prints, per shape, the median microseconds of each and its ratio to `kept` (calls in
// alternating groups). A second argument `depth` gives the product room for partial sums
// (Product::depth_partials), so that two threads split small maps' products by depth.
//
//   MX=$(python -c "import os, mxnet; print(os.path.dirname(mxnet.__file__))")
//   g++ -std=c++17 -O3 -fopenmp -mavx2 -mfma -mavx512f -DLCNN_KERNEL_ISA=Avx512 -I operators
//       -I $MX/include -o /tmp/product_handoff benchmarks/product_handoff.cc && /tmp/product_handoff 2
// (one command; the argument is the product's threads, 1 or 2; then `depth`, or nothing)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "lookup_conv_stages.h"

using I = LCNN_KERNEL_ISA;
static const int kCallsPerGroup = 200;
static const int kGroups = 5;  // per way of writing x, alternating
static const char* const kWays[] = {"kept", "channels", "columns", "other", "mine"};
static const int kNumWays = 5;

// Scales x by; volatile, so that the compiler cannot drop the stores of a scaling by one.
static volatile float scale = 1.f;

// x rewritten (each value scaled by one, so x stays the same) the way `way` says, by two threads.
static void Rewrite(int way, std::vector<float>* x, int64_t m, int64_t cols) {
  if (way == 0) return;
  float* v = x->data();
  const float one = scale;
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num();
    if (way == 1) {
      for (int64_t i = m * t / 2 * cols; i < m * (t + 1) / 2 * cols; ++i) v[i] *= one;
    } else if (way == 2) {
      for (int64_t r = 0; r < m; ++r)
        for (int64_t j = cols * t / 2; j < cols * (t + 1) / 2; ++j) v[r * cols + j] *= one;
    } else if (t == (way == 3 ? 1 : 0)) {
      for (int64_t i = 0; i < m * cols; ++i) v[i] *= one;
    }
  }
}

// Medians (us) of the product over x of m channels of h x h, k dictionary rows, per way.
static std::vector<double> Measure(int64_t m, int64_t h, int64_t k, int threads, bool depth) {
  const int64_t cols = h * h, wq = h + 2, s_floats = k * (h + 2) * wq + 64;
  std::vector<float> x(m * cols), d(k * m), s(s_floats, 0.f), packed(threads * PackedFloats<I>(m, false));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 97) * 0.01f;
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<float>(i % 89) * 0.01f;
  std::vector<int> rows(k);
  for (int64_t i = 0; i < k; ++i) rows[i] = static_cast<int>(i);
  std::vector<float> partials(depth ? (threads - 1) * s_floats : 0);
  Product product{d.data(), &rows, m, x.data(), cols, cols, s.data() + wq + 1, (h + 2) * wq, h, wq};
  if (depth && threads > 1) product.depth_partials = partials.data();
  std::vector<std::vector<double>> times(kNumWays);
  for (int group = 0; group < kGroups; ++group)
    for (int way = 0; way < kNumWays; ++way)
      for (int call = 0; call < kCallsPerGroup; ++call) {
        Rewrite(way, &x, m, cols);
        const auto start = std::chrono::steady_clock::now();
        DictionaryProduct<I>(product, threads, packed.data());
        times[way].push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
      }
  std::vector<double> medians;
  for (auto& t : times) {
    std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
    medians.push_back(t[t.size() / 2]);
  }
  return medians;
}

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const bool depth = argc > 2 && std::string(argv[2]) == "depth";
  // ResNet-18-fast's stride-1 products (m channels of h x h, k dictionary rows) and AlexNet-fast's conv4
  const int64_t shapes[][3] = {{64, 56, 16}, {128, 28, 32}, {256, 14, 64}, {512, 7, 128}, {384, 13, 30}};
  std::printf("DictionaryProduct at %d thread(s)%s: median us per call (ratio to kept)\n", threads,
              depth ? ", small maps split by depth" : "");
  for (const auto& sh : shapes) {
    const std::vector<double> us = Measure(sh[0], sh[1], sh[2], threads, depth);
    std::printf("m %3ld, %2ldx%-2ld, k %3ld:", static_cast<long>(sh[0]), static_cast<long>(sh[1]),
                static_cast<long>(sh[1]), static_cast<long>(sh[2]));
    for (int way = 0; way < kNumWays; ++way) std::printf("  %s %.1f (%.2f)", kWays[way], us[way], us[way] / us[0]);
    std::printf("\n");
  }
  return 0;
}
