// The dictionary product of a fully connected layer at batch 1 with its dictionary transposed
// (dictionary_layout "mk", lookup_conv_format.h): S = D x, read as the sum over the inputs j
// with x[j] != 0 of x[j] times row j of D's transpose (m x k). A layer after a ReLU has about
// half of its inputs at zero (AlexNet-fast's fc7 and classifier at the grid's densities: 50% and
// 68%), and the rows of those inputs are never read; D's rows (k x m) cannot skip them, as each
// of their cache lines holds 16 inputs. The result is exact: only zero products are left out.
//
// Alone in C++ on Zen 5, AlexNet-fast's fc7 dictionary (4096 x 512) and classifier (4096 x
// 1000) with 50% and 68% of the inputs zero, plus 1.3 MB of other weights, medians of 300 calls
// in six rounds: one thread 436-488 us as matrix-vector products of D (MatVec) against 138-147
// here, two threads 162-234 against 74-79. Without the prefetch below 176-181 and 98-101; with
// 8 registers across a row instead of 16 (AVX-512), 155-165 and 85-88; AVX2 kernels 8 registers
// (12 measured the same), 167-169 and 89-91.
#ifndef LCNN_LOOKUP_CONV_SPARSE_INPUT_H_
#define LCNN_LOOKUP_CONV_SPARSE_INPUT_H_

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>

// The rows of this many non-zero inputs ahead are prefetched: a row's piece is 256 bytes to 1
// KB at a position the hardware prefetchers cannot guess (rows are skipped). 2 and 8 measured
// within 5% of 4.
static const int kSparseInputAhead = 4;

// Columns [c0, c0 + width) of S (width <= V registers' lanes) over the n non-zero inputs
// (row[t], value[t]) of dt (m x k). kMasked: the last registers are partial (width < V lanes).
template <class I, int V, bool kMasked>
static inline void SparseInputColumns(const float* dt, int64_t k, const int* row, const float* value, int64_t n,
                                      int64_t c0, int64_t width, float* s) {
  typename I::Vec acc[V];
  typename I::Mask mask[V];
  for (int v = 0; v < V; ++v) {
    acc[v] = I::Zero();
    mask[v] = I::FirstLanes(static_cast<int>(std::min<int64_t>(width - int64_t{v} * I::kLanes, I::kLanes)));
  }
  const int64_t bytes = static_cast<int64_t>(width) * sizeof(float);
  for (int64_t t = 0; t < n; ++t) {
    if (t + kSparseInputAhead < n) {
      const char* ahead = reinterpret_cast<const char*>(dt + row[t + kSparseInputAhead] * k + c0);
      for (int64_t line = 0; line < bytes; line += 64) _mm_prefetch(ahead + line, _MM_HINT_T0);
    }
    const float* d = dt + row[t] * k + c0;
    const typename I::Vec x = I::Set(value[t]);
    for (int v = 0; v < V; ++v)
      acc[v] = I::Fma(kMasked ? I::LoadFirst(d + v * I::kLanes, mask[v]) : I::Load(d + v * I::kLanes), x, acc[v]);
  }
  for (int v = 0; v < V; ++v) {
    if (kMasked) I::StoreFirst(s + c0 + v * I::kLanes, mask[v], acc[v]);
    else I::Store(s + c0 + v * I::kLanes, acc[v]);
  }
}

// s[0, k) = D x for dt = D's transpose (m x k) and x (m), over `threads` threads (each a share
// of the columns). row, value: m ints and floats of scratch.
template <class I>
static inline void SparseInputProduct(const float* dt, int64_t m, int64_t k, const float* x, int* row, float* value,
                                      float* s, int threads) {
  int64_t n = 0;
  for (int64_t j = 0; j < m; ++j) {  // without a branch: half of them would be mispredicted
    row[n] = static_cast<int>(j), value[n] = x[j];
    n += x[j] != 0.f;
  }
  constexpr int V = I::kSparseInputVectors;
  const int64_t W = int64_t{V} * I::kLanes, blocks = (k + W - 1) / W;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t c0 = b * W, width = std::min(W, k - c0);
    if (width == W) SparseInputColumns<I, V, false>(dt, k, row, value, n, c0, width, s);
    else SparseInputColumns<I, V, true>(dt, k, row, value, n, c0, width, s);
  }
}

#endif  // LCNN_LOOKUP_CONV_SPARSE_INPUT_H_
