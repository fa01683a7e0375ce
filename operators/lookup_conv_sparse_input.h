// The dictionary product of a fully connected layer with its dictionary transposed
// (dictionary_layout "mk", lookup_conv_format.h): D' = D's transpose (m x k).
//
// At batch 1 (SparseInputProduct): S = D x, read as the sum over the inputs j with x[j] != 0 of
// x[j] times row j of D'. A layer after a ReLU has about half of its inputs at zero (AlexNet-fast's
// fc7 and classifier at the grid's densities: 50% and 68%), and the rows of those inputs are never
// read; D's rows (k x m) cannot skip them, as each of their cache lines holds 16 inputs. The
// result is exact: only zero products are left out.
//
// Alone in C++ on Zen 5, AlexNet-fast's fc7 dictionary (4096 x 512) and classifier (4096 x
// 1000) with 50% and 68% of the inputs zero, plus 1.3 MB of other weights, medians of 300 calls
// in six rounds: one thread 436-488 us as matrix-vector products of D (MatVec) against 138-147
// here, two threads 162-234 against 74-79. Without the prefetch below 176-181 and 98-101; with
// 8 registers across a row instead of 16 (AVX-512), 155-165 and 85-88; AVX2 kernels 8 registers
// (12 measured the same), 167-169 and 89-91.
//
// In a batch of at most I::kImagesPanelRows images (ImagesPanelProduct): S' = X D' (images x k)
// with all the images one panel of rows, on one register of D' columns: each strip of D' (a
// cache line of each of its rows, on 16 lanes; since run 64 from a copy of D' strip by strip,
// StripDictionary) streams from memory once, for all the images. The
// general product (DictionaryProduct) takes panels of 12 images on two registers, then the rest.
// Alone in C++ on Zen 5, one thread, AlexNet's classifier (4096 x 1000), medians of 40 calls:
//
//   | images | caches flushed before each call: general, here (us) | D' in cache: general, here |
//   | 8      | 1246-1306, 579-591                                     | 418-475, 543-546           |
//   | 12     | 1426-1443, 706-726                                     | 528-561, 649-654           |
//   | 16     | 1635-1717, 865-922                                     | 761-774, 838-866           |
//
// fc7's dictionary (4096 x 512) at 16 images, flushed: 752-781 against 542-566. D' in cache it
// loses 10-30%; in a network it is not in cache (AlexNet's weights are 26 MB a call, its
// activations at batch 16 more), and AlexNet-fast's whole export at batch 16 (lcnn-predict, six
// rounds alternating) took 10.66-11.11 ms against 11.13-11.72 at one thread, 6.62-7.28 against
// 6.91-7.80 at two. The general product's strips taken one by one for both of its panels (D'
// read once) took 1436-1460 us at 16 images, flushed: reading D' twice is not what it loses.
// AVX2's registers are half a cache line: 12 images on one register took 1150-1176 us against the
// general product's 940-1008 (its panels of 6 images on two), so that set keeps the general one.
// More images than one panel (two panels a strip at 32 images) lost 33% in cache and were not
// measured flushed: they take the general product.
#ifndef LCNN_LOOKUP_CONV_SPARSE_INPUT_H_
#define LCNN_LOOKUP_CONV_SPARSE_INPUT_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "lookup_conv_gemm.h"
#include "lookup_conv_stages.h"

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
  StaticFor(blocks, threads, [&](int64_t b, int) {
    const int64_t c0 = b * W, width = std::min(W, k - c0);
    if (width == W) SparseInputColumns<I, V, false>(dt, k, row, value, n, c0, width, s);
    else SparseInputColumns<I, V, true>(dt, k, row, value, n, c0, width, s);
  });
}

// Rows of D' a pass of ImagesPanelProduct covers (16 images' inputs of them: 8 KB, in L1), and
// what its strips fetch ahead: rows kImagesPanelAheadRows further down the strip into L1, and
// the next strip's rows into L2. Measured when the strips were read in place, each row of a strip
// one cache line of D', a page or more from the next, where no hardware prefetcher follows: with
// 512 rows a pass and the next strip fetched into L1 (its 512 lines, 32 KB, went out of L1 before
// they were read), AlexNet's fc7 dictionary (4096 x 1024) alone at 16 images, one thread, Intel
// Xeon, medians of 30-40 calls: 3.36 ms (D' from L3, 5 GB/s); with these values 1.99-2.05. The
// classifier (4096 x 1000) 1.97 -> 1.77-1.84 ms, AlexNet-fast's fc7 dictionary (4096 x 512) 1.22 ->
// 0.95-0.98. 64 and 256 rows measured the same as 128, 8 rows ahead as 16.
static const int kImagesPanelDepth = 128;
static const int kImagesPanelAheadRows = 16;

// Floats of D' strip by strip (StripDictionary), m rows x k columns.
template <class I>
constexpr int64_t StripDictionaryFloats(int64_t m, int64_t k) {
  return (k + I::kLanes - 1) / I::kLanes * I::kLanes * m;
}

// ds = D' (dt, m x k) strip by strip, as ImagesPanelProduct reads it: strip s (columns [s L,
// s L + L), L a register's lanes) is its m rows of L floats one after another, the columns past k
// left as they are (zero: ds comes zeroed). Read in place, a strip's rows were a page apart, and a
// pass fetched one line of each page (about 6 GB/s in a network, this host reading 11); a strip
// of its own streams in order. AlexNet-fast at batch 16, lcnn-predict, alternating processes,
// medians of 8 rounds: 0.934 of the time at one thread, 0.935 at two; AlexNet-accurate 0.963 (6).
template <class I>
static inline void StripDictionary(const float* dt, int64_t m, int64_t k, float* ds, int threads) {
  const int64_t L = I::kLanes, strips = (k + L - 1) / L;
  StaticFor(m, threads, [&](int64_t c, int) {  // D' read in order, row by row
    for (int64_t s = 0; s < strips; ++s)
      std::memcpy(ds + (s * m + c) * L, dt + c * k + s * L, std::min(L, k - s * L) * sizeof(float));
  });
}

// out (n x k, rows k apart) = x (n x m: the images' inputs) D' (ds: StripDictionary's layout) for
// n <= I::kImagesPanelRows, all n rows one panel over strips of one register of columns, each
// thread a share of the strips.
template <class I>
static inline void ImagesPanelProduct(const float* x, int n, int64_t m, const float* ds, int64_t k, float* out,
                                      int threads) {
  const int64_t L = I::kLanes, strips = (k + L - 1) / L;
  OnTeam(threads, [&](int me, int team) {
    const Share share = ShareOf(strips, me, team);
    const int64_t s0 = share.first, s1 = share.last;
    for (int64_t c0 = 0; c0 < m; c0 += kImagesPanelDepth) {
      const int depth = static_cast<int>(std::min<int64_t>(kImagesPanelDepth, m - c0));
      const float* a = x + c0;
      for (int64_t s = s0; s < s1; ++s) {
        const float* b = ds + (s * m + c0) * L;
        const float* next = s + 1 < s1 ? b + m * L : nullptr;
        const StripAhead ahead{next ? next : b, kImagesPanelAheadRows, next};
        StripOfPanel<I, 1, I::kImagesPanelRows>(n, &a, m, m, depth, b, L, ahead, c0 > 0, std::min(L, k - s * L),
                                                out + s * L, k);
      }
    }
  });
}

#endif  // LCNN_LOOKUP_CONV_SPARSE_INPUT_H_
