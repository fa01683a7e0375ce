// The dictionary product's panels on rows of D that share L1 sets (SharesL1Sets in
// operators/lookup_conv_gemm.h): the operator's own GemmStrip, one panel of kPanelRows rows
// after another over one strip of a register's columns (a fully connected layer at batch 16 on
// AVX-512), with the panel's rows read side by side and skewed, calls alternating. D's rows are
// `depth` floats long (and apart): 4096 and 1024 put them all in one set at every column, 512
// in two. Prints, per D: milliseconds (medians) and time skewed / side by side.
//
//   g++ -std=c++17 -O3 -mavx2 -mfma -mavx512f -DLCNN_KERNEL_ISA=Avx512 -I operators \
//       -o /tmp/panel_sets benchmarks/panel_sets.cc && /tmp/panel_sets
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "lookup_conv_isa.h"
#include "lookup_conv_gemm.h"

using I = LCNN_KERNEL_ISA;
static const int kPairs = 50;

// All panels of D (rows x depth) over one strip x (depth x kLanes); milliseconds.
template <bool Skewed>
static double Product(const float* d, int rows, int depth, const float* x, float* out) {
  const auto start = std::chrono::steady_clock::now();
  for (int p = 0; p + I::kPanelRows <= rows; p += I::kPanelRows) {
    const float* first = d + static_cast<int64_t>(p) * depth;
    GemmStrip<I, I::kPanelRows, 1, true, Skewed>(&first, depth, depth, x, I::kLanes, StripAhead{x, 0, nullptr},
                                                  false, I::kLanes, out + p * I::kLanes, I::kLanes);
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

int main() {
  if constexpr (I::kPanelRows <= kL1Ways) {
    std::printf("panels of %d rows fit L1's %d ways: never skewed\n", I::kPanelRows, kL1Ways);
    return 0;
  }
  for (const auto& [rows, depth] : {std::pair<int, int>{516, 4096}, {1008, 4096}, {1008, 1024}, {1008, 512}}) {
    std::vector<float> d(static_cast<size_t>(rows) * depth + I::kLanes), x(static_cast<size_t>(depth) * I::kLanes),
        plain(rows * I::kLanes), skewed(rows * I::kLanes);
    for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<float>(i % 7) * 0.1f;
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 5) * 0.1f;
    std::vector<double> a, b;
    for (int i = 0; i < kPairs; ++i) {
      a.push_back(Product<false>(d.data(), rows, depth, x.data(), plain.data()));
      b.push_back(Product<true>(d.data(), rows, depth, x.data(), skewed.data()));
    }
    double worst = 0;  // relative, between the two orders of the sums
    for (size_t i = 0; i < plain.size(); ++i)
      worst = std::max(worst, std::abs(double(plain[i]) - skewed[i]) / std::max(1.0, std::abs(double(plain[i]))));
    std::sort(a.begin(), a.end()), std::sort(b.begin(), b.end());
    std::printf("D %4d x %4d (rows %2d KB apart): side by side %.3f ms, skewed %.3f ms, ratio %.3f%s\n", rows, depth,
                depth / 256, a[kPairs / 2], b[kPairs / 2], b[kPairs / 2] / a[kPairs / 2],
                worst > 1e-5 ? " (SUMS DIFFER)" : "");
  }
  return 0;
}
