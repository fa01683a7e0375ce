// The dictionary product transposed, for stride-1 layers on maps of a few columns a row
// (Plan::transposed_product: ResNet-18's 14x14 and 7x7 layers). The general product
// (lookup_conv_stages.h) takes strips of two registers of columns: on a 7x7 map two strips cover
// 49 columns with 64 lanes, and every strip crosses several of S's rows, so its results go
// through a copy. Here the dictionary rows are the lanes instead: a block of
// kTransposedVectors registers of them (D transposed on every call) against up to
// I::kTransposedPixels pixels of one image row, each broadcast from x; the accumulators are
// transposed in registers at the end and stored into the pixels' places in S's padded rows.
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

// dt (TransposedDictionaryFloats) = all the listed rows of D transposed, block after block.
template <class I>
static inline void TransposeDictionary(const float* d, const std::vector<int>& rows, int64_t m, float* dt) {
  constexpr int64_t B = kTransposedVectors * I::kLanes;
  const int64_t blocks = (static_cast<int64_t>(rows.size()) + B - 1) / B;
  for (int64_t i0 = 0; i0 < blocks * B; i0 += I::kLanes)
    TransposeDictionaryRows<I>(d, rows, m, i0, dt + i0 / B * m * B);
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
// blocks of B rows, block b at dt + b * block_floats (0: the one block at dt is block b), its
// depth steps ldt floats apart.
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

// Floats of TransposedProduct's scratch for `threads` threads: one block of D^T each, or (per_thread,
// Plan::transposed_per_thread) all of D's k listed rows each.
template <class I>
constexpr int64_t TransposedScratchFloats(int64_t k, int64_t m, bool per_thread, int threads) {
  return (per_thread ? TransposedDictionaryFloats<I>(k, m) : kTransposedVectors * I::kLanes * m) * threads;
}

// S = the listed rows of D (k x m) x X (m channels of h x w) for a stride-1 layer, each image row
// of S stored into its padded row: pixel (y, x) of S row i at out[i * ldo + y * pitch + x]. dt:
// TransposedScratchFloats of scratch, from a 64-byte boundary. D is transposed on every call (the
// operator reads D as it comes), by each thread into scratch of its own: each thread takes its
// share of the blocks, and transposes a block right before the units that read it, while it is
// in its cache; or, when the threads outnumber the blocks (per_thread,
// Plan::transposed_per_thread), each transposes all of D and takes its share of the units.
// benchmarks/transpose_sharing.cc, Intel AVX-512 host, caches flushed before each call, µs,
// each thread all of D first -> block by block: one thread, 14x14, k = 512, 370 -> 345 and
// 7x7, k = 1024 (2 MB), 573 -> 440 (the general product 496); two threads 219 -> 200 and 360 ->
// 239 (general 254; all of D transposed once and shared 206 and 273-280). With one block (k =
// 64) at two threads, one thread would take it all: 52 block by block against 43 each
// transposing all of D. Threads that shared one transposed
// D read the lines the other one wrote, a line at a time from the other core (run 55: 14x14,
// k = 64, two threads, 40-41 -> 28-29 each its own).
template <class I>
static inline void TransposedProduct(const float* d, const std::vector<int>& rows, int64_t m, const float* x, int64_t h,
                                     int64_t w, float* out, int64_t ldo, int64_t pitch, float* dt, bool per_thread,
                                     int threads) {
  constexpr int64_t B = kTransposedVectors * I::kLanes, P = I::kTransposedPixels;
  if constexpr (P >= 1) {  // (a set without the kernel never plans it)
    const int64_t k = rows.size(), blocks = (k + B - 1) / B, units_a_block = h * ((w + P - 1) / P);
    const int64_t groups_a_block = B / I::kLanes;
    OnTeam(threads, [&](int t, int team) {
      float* own = dt + t * TransposedScratchFloats<I>(k, m, per_thread, 1);
      if (per_thread) {
        TransposeDictionary<I>(d, rows, m, own);
        const Share share = ShareOf(blocks * units_a_block, t, team);
        for (int64_t unit = share.first; unit < share.last; ++unit)
          TransposedUnit<I>(own, B, m * B, k, m, x, h, w, out, ldo, pitch, unit);
        return;
      }
      const Share share = ShareOf(blocks, t, team);
      for (int64_t b = share.first; b < share.last; ++b) {
        for (int64_t group = 0; group < groups_a_block; ++group)
          TransposeDictionaryRows<I>(d, rows, m, b * B + group * I::kLanes, own);
        for (int64_t unit = b * units_a_block; unit < (b + 1) * units_a_block; ++unit)
          TransposedUnit<I>(own, B, 0, k, m, x, h, w, out, ldo, pitch, unit);  // (block b at own)
      }
    });
  }
}

#endif  // LCNN_LOOKUP_CONV_TRANSPOSED_H_
