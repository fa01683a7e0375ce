// The dictionary product transposed, for stride-1 layers on maps of a few columns a row
// (Plan::transposed_product: ResNet-18's 14x14 and 7x7 layers). The general product
// (lookup_conv_stages.h) takes strips of two registers of columns: on a 7x7 map two strips cover
// 49 columns with 64 lanes, and every strip crosses several of S's rows, so its results go
// through a copy. Here the dictionary rows are the lanes instead: a block of
// kTransposedVectors registers of them (D's listed rows transposed into blocks, kept with the
// plan and made again only when D changes) against up to I::kTransposedPixels pixels of one
// image row, each broadcast from x; the accumulators are transposed in registers at the end and
// stored into the pixels' places in S's padded rows.
// Only translation units compiled for a kernel set include this header.
#ifndef LCNN_LOOKUP_CONV_TRANSPOSED_H_
#define LCNN_LOOKUP_CONV_TRANSPOSED_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "lookup_conv_isa.h"
#include "lookup_conv_team.h"

// Registers of dictionary rows in a block. 7 pixels x 4 registers (a step: 7 broadcasts and 4
// loads to 28 multiply-adds) ran a 7x7 product at 160-175 GFLOP/s alone, 14 pixels x 2
// registers (16 loads to 28) at 83. Its 28 accumulators, the step's 4 registers of D and a
// broadcast pixel are 33 of AVX-512's 32 registers, so GCC keeps one accumulator in memory: 6
// pixels (29 registers) were no faster a pixel (167-191 GFLOP/s).
static constexpr int kTransposedVectors = 4;

// Floats of D transposed (TransposeDictionaryRows) for k listed rows of m floats.
template <class I>
constexpr int64_t TransposedDictionaryFloats(int64_t k, int64_t m) {
  constexpr int64_t B = kTransposedVectors * I::kLanes;
  return (k + B - 1) / B * B * m;
}

// The listed rows of D (k x m, row rows[i] for i < rows.size()) transposed in blocks of B =
// kTransposedVectors * kLanes rows: block b holds m steps of B floats, step c's lane i being
// D[rows[b * B + i]][c], and 0 past the last row. This call writes rows [i0, i0 + kLanes) into
// their block, at `block_of_i0` (m * B floats), in kLanes x kLanes tiles transposed in registers.
template <class I>
static inline void TransposeDictionaryRows(const float* d, const std::vector<int>& rows, int64_t m, int64_t i0,
                                           float* block_of_i0) {
  constexpr int L = I::kLanes;
  constexpr int64_t B = kTransposedVectors * L;
  const int64_t k = rows.size();
  float* block = block_of_i0 + i0 % B;
  for (int64_t c0 = 0; c0 < m; c0 += L) {
    const int n = static_cast<int>(std::min<int64_t>(L, m - c0));
    typename I::Vec t[L];
    for (int l = 0; l < L; ++l)
      t[l] = i0 + l < k ? I::LoadFirst(d + static_cast<int64_t>(rows[i0 + l]) * m + c0, I::FirstLanes(n)) : I::Zero();
    I::Transpose(t);
    for (int j = 0; j < n; ++j) I::Store(block + (c0 + j) * B, t[j]);
  }
}

// dt (TransposedDictionaryFloats) = all the listed rows of D transposed, block after block;
// `threads` threads take a share of the blocks each.
template <class I>
static inline void TransposeDictionary(const float* d, const std::vector<int>& rows, int64_t m, float* dt,
                                       int threads) {
  constexpr int64_t B = kTransposedVectors * I::kLanes;
  const int64_t blocks = (static_cast<int64_t>(rows.size()) + B - 1) / B;
  OnTeam(threads, [&](int t, int team) {
    const Share share = ShareOf(blocks, t, team);
    for (int64_t i0 = share.first * B; i0 < share.last * B; i0 += I::kLanes)
      TransposeDictionaryRows<I>(d, rows, m, i0, dt + i0 / B * m * B);
  });
}

// out (rows of S, ldo floats apart; pixel p at out[p]) = the block's first `rows` dictionary rows
// (dt: depth steps of kTransposedVectors registers, ldt floats apart) x P pixels of x (pixel p's
// value c at x[c * ldx + p]). Not inlined, as GemmStrip: its registers are its speed.
template <class I, int P>
__attribute__((noinline)) static void TransposedStrip(const float* dt, int64_t ldt, int depth, const float* x,
                                                      int64_t ldx, int rows, float* out, int64_t ldo) {
  using Vec = typename I::Vec;
  constexpr int V = kTransposedVectors, L = I::kLanes;
  Vec acc[P][V];
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[p][v] = I::Zero();
  }
  for (int c = 0; c < depth; ++c) {
    Vec d[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) d[v] = I::Load(dt + c * ldt + v * L);
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const Vec w = I::Broadcast(x + c * ldx + p);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[p][v] = I::Fma(w, d[v], acc[p][v]);
    }
  }
  const typename I::Mask pixels = I::FirstLanes(P);
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) {
    if (v * L >= rows) break;
    Vec t[L];  // lane i of t[p]: row v * L + i at pixel p; transposed: lane p of t[i]
#pragma GCC unroll 16
    for (int p = 0; p < L; ++p) t[p] = p < P ? acc[p < P ? p : 0][v] : I::Zero();
    I::Transpose(t);
    const int n = std::min(L, rows - v * L);
    for (int i = 0; i < n; ++i) I::StoreFirst(out + (v * L + i) * ldo, pixels, t[i]);
  }
}

// TransposedStrip for `pixels` (1 .. I::kTransposedPixels), picked at compile time.
template <class I, int P = I::kTransposedPixels>
static inline void TransposedStripOf(int pixels, const float* dt, int64_t ldt, int depth, const float* x, int64_t ldx,
                                     int rows, float* out, int64_t ldo) {
  if constexpr (P >= 1) {
    if constexpr (P > 1) {
      if (pixels < P) return TransposedStripOf<I, P - 1>(pixels, dt, ldt, depth, x, ldx, rows, out, ldo);
    }
    TransposedStrip<I, P>(dt, ldt, depth, x, ldx, rows, out, ldo);
  }
}

// One unit of the transposed product: dictionary block b, image row y and its piece of up to
// I::kTransposedPixels pixels from column x0 (unit = (b * h + y) * pieces + x0 / P). dt: D^T in
// blocks of B rows, block b at dt + b * block_floats, its depth steps ldt floats apart
// (TransposeDictionary's blocks: ldt = B, block_floats = m * B).
template <class I>
static inline void TransposedUnit(const float* dt, int64_t ldt, int64_t block_floats, int64_t k, int64_t m,
                                  const float* x, int64_t h, int64_t w, float* out, int64_t ldo, int64_t pitch,
                                  int64_t unit) {
  constexpr int64_t B = kTransposedVectors * I::kLanes, P = I::kTransposedPixels;
  if constexpr (P >= 1) {
    const int64_t pieces = (w + P - 1) / P, b = unit / (h * pieces), y = unit / pieces % h, x0 = unit % pieces * P;
    TransposedStripOf<I>(static_cast<int>(std::min(P, w - x0)), dt + b * block_floats, ldt, static_cast<int>(m),
                         x + y * w + x0, h * w, static_cast<int>(std::min(B, k - b * B)),
                         out + b * B * ldo + y * pitch + x0, ldo);
  }
}

// S = D's k listed rows (dt: transposed by TransposeDictionary) x X (m channels of h x w) for a
// stride-1 layer, each image row of S stored into its padded row: pixel (y, x) of S row i at
// out[i * ldo + y * pitch + x]. Each thread takes its share of the units, block after block.
// Why D^T is kept rather than made on every call (benchmarks/dictionary_layout.cc, one thread,
// AVX-512, µs, transposed on the call -> kept, caches flushed before each call):
// ResNet-18-accurate's 7x7 layers (k = 1024, m = 512) 610-770 -> 427-524, its 14x14 layers
// (k = 512, m = 256) 427-450 -> 398-413, ResNet-18-fast's 7x7 (k = 128) 75-77 -> 59-61. At
// two threads the units split as they come: the kept blocks are only read, so each core keeps
// its own copy of the lines it reads (run 55: threads sharing a D^T that one of them had just
// written read it a line at a time from the other core).
template <class I>
static inline void TransposedProduct(const float* dt, int64_t k, int64_t m, const float* x, int64_t h, int64_t w,
                                     float* out, int64_t ldo, int64_t pitch, int threads) {
  constexpr int64_t B = kTransposedVectors * I::kLanes, P = I::kTransposedPixels;
  if constexpr (P >= 1) {  // (a set without the kernel never plans it)
    const int64_t units = (k + B - 1) / B * h * ((w + P - 1) / P);
    OnTeam(threads, [&](int t, int team) {
      const Share share = ShareOf(units, t, team);
      for (int64_t unit = share.first; unit < share.last; ++unit)
        TransposedUnit<I>(dt, B, m * B, k, m, x, h, w, out, ldo, pitch, unit);
    });
  }
}

#endif  // LCNN_LOOKUP_CONV_TRANSPOSED_H_
