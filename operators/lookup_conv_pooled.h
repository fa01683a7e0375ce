// Pooled rows of lcnn_lookup_conv: the lookup stage of a layer whose 3x3, stride-2 max pooling is
// fused (ResNet-18's conv1), with each output row of the convolution accumulated in registers
// and pooled there, instead of stored into an extended plane and read back by MaxPool
// (lookup_conv_epilogue.h). Written once for any instruction set of lookup_conv_isa.h.
//
// Pooled row py takes the convolution's rows [2 py - pool_ph, 2 py - pool_ph + 3) within
// [0, ho); the last of them is the first of row py + 1's, so its column maxima are kept
// (`carry`) and each convolution row is accumulated once. The work goes pooled row by pooled row,
// every channel in each, so that the channels share the few rows of S a pooled row reads while
// they are in cache. What it waits on is its loads of S, nearly all across two cache lines
// (benchmarks/RESULTS.md, run 48).
#ifndef LCNN_LOOKUP_CONV_POOLED_H_
#define LCNN_LOOKUP_CONV_POOLED_H_

#include <algorithm>
#include <cstdint>

#include "lookup_conv_attrs.h"

// Floats of one channel's kept column maxima (PooledRow's registers of pooled columns: one for
// two of the convolution row's).
template <class I>
static inline int64_t PooledCarryFloats(const Geometry& g) {
  return (OutputRowRegisters(g, I::kLanes) + 1) / 2 * I::kLanes;
}

// Rows [row, row + R) of the convolution (`base` at the first, rows wq floats apart),
// accumulated over the entries in R x V registers, then pooled across columns: columns
// 2x - pw .. 2x - pw + 2 of pooled column x, the even and odd columns taken apart in registers;
// `columns` gets the last row's maxima, `pooled` the maximum with every row's.
template <class I, int V, int R>
__attribute__((always_inline)) static inline void PoolRows(const float* base, int64_t wq, const int* off,
                                                           const float* coef, int nnz, typename I::Mask valid, int pw,
                                                           typename I::Vec (&pooled)[(V + 1) / 2],
                                                           typename I::Vec (&columns)[(V + 1) / 2]) {
  using Vec = typename I::Vec;
  constexpr int L = I::kLanes, P = (V + 1) / 2;
  const Vec none = I::Set(-__builtin_inff());
  Vec acc[R][V];  // every loop over registers fully unrolled (see AccumulateTile)
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) acc[r][v] = I::Zero();
  for (int j = 0; j < nnz; ++j) {
    const Vec c = I::Broadcast(coef + j);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const float* src = base + r * wq + off[j];
      asm("" : "+r"(src));  // one register a row, each load at a constant displacement from it
#pragma GCC unroll 16
      for (int v = 0; v < V; ++v) acc[r][v] = I::Fma(c, I::Load(src + v * L), acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    acc[r][V - 1] = I::Keep(valid, acc[r][V - 1]);  // no column past wo in a window
    Vec even[P], odd[P];
#pragma GCC unroll 16
    for (int i = 0; i < P; ++i) {
      const Vec hi = 2 * i + 1 < V ? acc[r][2 * i + 1] : none;
      even[i] = I::EvenLanes(acc[r][2 * i], hi), odd[i] = I::OddLanes(acc[r][2 * i], hi);
    }
#pragma GCC unroll 16
    for (int i = 0; i < P; ++i) {  // pw 1: odd x-1, even x, odd x; pw 0: even x, odd x, even x+1
      const Vec third = pw ? I::template ShiftIn<L - 1>(i ? odd[i - 1] : none, odd[i])
                           : I::template ShiftIn<1>(even[i], i + 1 < P ? even[i + 1] : none);
      columns[i] = I::Max(I::Max(even[i], odd[i]), third);
      pooled[i] = I::Max(pooled[i], columns[i]);
    }
  }
}

// One pooled row of one channel over the convolution's rows [row0, row1): the channel's entries
// (offsets `off` into S, whose rows are wq floats apart, coefficients `coef`) in V registers a
// row (wo <= V lanes), two rows at a time where the registers hold them. The maximum over the
// rows, and over `carry_in`'s (unless null), plus bias, act, is stored to out's xo floats;
// `carry_out` (unless null) keeps row row1 - 1's column maxima.
template <class I, int V>
__attribute__((noinline)) static void PooledRow(const float* s, int64_t wq, const int* off, const float* coef,
                                                int nnz, int64_t row0, int64_t row1, int wo, int pw,
                                                const float* carry_in, float* carry_out, float bias, bool relu,
                                                int xo, float* out) {
  using Vec = typename I::Vec;
  constexpr int L = I::kLanes, P = (V + 1) / 2;
  const Vec none = I::Set(-__builtin_inff());
  const typename I::Mask valid = I::FirstLanes(wo - (V - 1) * L);
  Vec pooled[P], columns[P];
#pragma GCC unroll 16
  for (int i = 0; i < P; ++i) pooled[i] = carry_in ? I::Load(carry_in + i * L) : none, columns[i] = none;
  int64_t row = row0;
  if constexpr (2 * V <= I::kRowTileVectors) {
    for (; row + 2 <= row1; row += 2) PoolRows<I, V, 2>(s + row * wq, wq, off, coef, nnz, valid, pw, pooled, columns);
  }
  for (; row < row1; ++row) PoolRows<I, V, 1>(s + row * wq, wq, off, coef, nnz, valid, pw, pooled, columns);
  const Vec b = I::Set(bias);
#pragma GCC unroll 16
  for (int i = 0; i < P; ++i) {
    if (carry_out) I::Store(carry_out + i * L, columns[i]);
    // (bias and act after the maximum: both keep the order of the window's values)
    Vec v = I::Add(pooled[i], b);
    if (relu) v = I::Max(v, I::Zero());
    if ((i + 1) * L <= xo) I::Store(out + i * L, v);
    else if (i * L < xo) I::StoreFirst(out + i * L, I::FirstLanes(xo - i * L), v);
  }
}

// PooledRow for rows of `registers` registers (at most I::kRowTileVectors).
template <class I, int V = I::kRowTileVectors>
static inline void PooledRowOf(int registers, const float* s, int64_t wq, const int* off, const float* coef, int nnz,
                               int64_t row0, int64_t row1, int wo, int pw, const float* carry_in, float* carry_out,
                               float bias, bool relu, int xo, float* out) {
  if constexpr (V > 1) {
    if (registers < V)
      return PooledRowOf<I, V - 1>(registers, s, wq, off, coef, nnz, row0, row1, wo, pw, carry_in, carry_out, bias,
                                   relu, xo, out);
  }
  PooledRow<I, V>(s, wq, off, coef, nnz, row0, row1, wo, pw, carry_in, carry_out, bias, relu, xo, out);
}

// Pooled rows [py0, py1) of every channel of one image (p.num_filter planes of yo x xo at y):
// S (offsets `off`, each channel f's entries [indptr[f], indptr[f + 1])), `carry` room for
// every channel's kept maxima (PooledCarryFloats each).
template <class I>
static inline void PooledRows(const Params& p, const Geometry& g, const float* s, const int* indptr, const int* off,
                              const float* coefs, const float* bias, int64_t py0, int64_t py1, float* carry,
                              float* y) {
  const int registers = static_cast<int>(OutputRowRegisters(g, I::kLanes));
  const int64_t carry_floats = PooledCarryFloats<I>(g), plane = g.yo * g.xo;
  const auto first_row = [&](int64_t py) { return std::max<int64_t>(0, py * 2 - p.pool_ph); };
  const auto end_row = [&](int64_t py) { return std::min<int64_t>(g.ho, py * 2 - p.pool_ph + 3); };
  for (int64_t py = py0; py < py1; ++py) {
    const int64_t row0 = first_row(py), row1 = end_row(py);
    // the previous pooled row's last row is this one's first: its maxima were kept
    const bool carried = py > py0 && end_row(py - 1) - 1 == row0;
    const bool keep = py + 1 < py1 && row1 - 1 == first_row(py + 1);
    for (int f = 0; f < p.num_filter; ++f) {
      float* kept = carry + f * carry_floats;
      PooledRowOf<I>(registers, s, g.wq, off + indptr[f], coefs + indptr[f], indptr[f + 1] - indptr[f],
                     carried ? row0 + 1 : row0, row1, static_cast<int>(g.wo), p.pool_pw, carried ? kept : nullptr,
                     keep ? kept : nullptr, bias[f], p.relu, static_cast<int>(g.xo), y + f * plane + py * g.xo);
    }
  }
}

#endif  // LCNN_LOOKUP_CONV_POOLED_H_
