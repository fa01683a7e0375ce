// Vector kernels of lcnn_lookup_conv (see lookup_conv.cc), written once for any instruction
// set of lookup_conv_isa.h (template parameter I). Only translation units compiled for a set
// include this header; they run after initialize() checked the CPU (library_init.cc).
#ifndef LCNN_LOOKUP_CONV_KERNELS_H_
#define LCNN_LOOKUP_CONV_KERNELS_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "lookup_conv_isa.h"

// Floats per output tile of the lookup stage: the set's kTileVectors registers.
template <class I>
constexpr int TileFloats() { return I::kTileVectors * I::kLanes; }

// out[0..V lanes) = act(start + sum over entries of coef * s[off .. off + V lanes)), where start
// is bias, or out's own values when `partial` (a tile accumulated in several calls); the V
// accumulators stay in registers.
template <class I, int V>
static inline void AccumulateTile(const float* s, const int* off, const float* coef, int nnz,
                                  float bias, bool partial, bool relu, float* out) {
  // Every loop over v fully unrolled: otherwise GCC keeps acc in memory and stores all V
  // registers on every entry, which made this loop bound by stores (1 a cycle), not FMAs.
  typename I::Vec acc[V];
#pragma GCC unroll 16
  for (int v = 0; v < V; ++v) acc[v] = partial ? I::Load(out + I::kLanes * v) : I::Set(bias);
  for (int j = 0; j < nnz; ++j) {
    const typename I::Vec c = I::Broadcast(coef + j);
    const float* src = s + off[j];
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) acc[v] = I::Fma(c, I::Load(src + I::kLanes * v), acc[v]);
  }
  if (relu) {
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) acc[v] = I::Max(acc[v], I::Zero());
  }
#pragma GCC unroll 16
  for (int v = 0; v < V; ++v) I::Store(out + I::kLanes * v, acc[v]);
}

// The same for the first `floats` of a tile (1 .. TileFloats): the number of registers picked
// at compile time, from V = kTileVectors down.
template <class I, int V = I::kTileVectors>
static inline void AccumulatePartialTile(const float* s, const int* off, const float* coef, int nnz,
                                         float bias, bool partial, bool relu, float* out, int64_t floats) {
  if constexpr (V > 1) {
    if (floats <= static_cast<int64_t>(V - 1) * I::kLanes)
      return AccumulatePartialTile<I, V - 1>(s, off, coef, nnz, bias, partial, relu, out, floats);
  }
  AccumulateTile<I, V>(s, off, coef, nnz, bias, partial, relu, out);
}

// Class tiles (plan.classes, lookup_conv_plan.h): S's rows start on register boundaries, so an
// entry's only misalignment is its tap's column shift c in [0, classes). Entries come grouped by
// c (class c: entries [starts[c], starts[c + 1])), and the classes are summed as a polynomial in
// a one-lane shift (Horner's rule), from the last class down: z = shift(z) + sum of class c's
// entries, each loaded at s + off - c (one cache line a register). Then out[v] = act(start + z[v]),
// start being bias, or out's own values when `partial`. z spans one register more than the tile
// (lanes shifted in from it), unless Shifted is false (one class: nothing to shift); a shift fills
// the top lane of that register with junk, which after classes - 1 <= kLanes - 1 shifts has not
// reached the tile's own registers. Not inlined: its registers are checked by
// tests/test_kernel_sets.py.
template <class I, int V, bool Shifted>
__attribute__((noinline)) static void AccumulateClassTile(const float* s, const int* off, const float* coef,
                                                          const int* starts, int classes, float bias, bool partial,
                                                          bool relu, float* out) {
  using Vec = typename I::Vec;
  constexpr int L = I::kLanes, W = Shifted ? V + 1 : V;
  Vec z[W];  // every loop over v fully unrolled (see AccumulateTile)
#pragma GCC unroll 32
  for (int v = 0; v < W; ++v) z[v] = I::Zero();
  for (int c = classes - 1; c >= 0; --c) {
    if constexpr (Shifted) {
      if (c < classes - 1) {
#pragma GCC unroll 32
        for (int v = 0; v < W; ++v) z[v] = I::template ShiftIn<1>(z[v], z[v + 1 < W ? v + 1 : v]);
      }
    }
    for (int j = starts[c]; j < starts[c + 1]; ++j) {
      const Vec k = I::Broadcast(coef + j);
      const float* src = s + off[j] - c;
#pragma GCC unroll 32
      for (int v = 0; v < W; ++v) z[v] = I::Fma(k, I::Load(src + L * v), z[v]);
    }
  }
#pragma GCC unroll 32
  for (int v = 0; v < V; ++v) {
    Vec y = I::Add(partial ? I::Load(out + L * v) : I::Set(bias), z[v]);
    if (relu) y = I::Max(y, I::Zero());
    I::Store(out + L * v, y);
  }
}

// Row tiles: R output rows of V registers each (rows ldo apart in out, lds apart in s), over
// `width` floats per row (the last register's lanes past it neither read from out or residual
// nor written). out = act(start + sum over entries of coef * s[off + ...] [+ residual]), where
// start is bias, or out's own values when `partial` (a tile accumulated in several calls): the
// shortcut (rows ldr apart) is added before act. The R x V accumulators stay in registers; S
// is read past `width` (junk lanes).
template <class I, int R, int V>
__attribute__((noinline)) static void AccumulateRows(const float* s, int64_t lds, const int* off, const float* coef,
                                                     int nnz, float bias, bool partial, const float* residual,
                                                     int64_t ldr, bool relu, int width, float* out, int64_t ldo) {
  using Vec = typename I::Vec;
  const int L = I::kLanes;
  const bool whole = width == V * L;  // else the last register of each row under a mask
  const typename I::Mask tail = I::FirstLanes(width - (V - 1) * L);
  Vec acc[R][V];  // every loop over r and v fully unrolled (see AccumulateTile)
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) {
      const float* o = out + r * ldo + v * L;
      acc[r][v] = !partial ? I::Set(bias) : v + 1 < V || whole ? I::Load(o) : I::LoadFirst(o, tail);
    }
  }
  for (int j = 0; j < nnz; ++j) {
    const Vec c = I::Broadcast(coef + j);
    const float* src = s + off[j];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
      for (int v = 0; v < V; ++v) acc[r][v] = I::Fma(c, I::Load(src + r * lds + v * L), acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) {
      if (residual) {
        const float* res = residual + r * ldr + v * L;
        acc[r][v] = I::Add(acc[r][v], v + 1 < V || whole ? I::Load(res) : I::LoadFirst(res, tail));
      }
      if (relu) acc[r][v] = I::Max(acc[r][v], I::Zero());
      if (v + 1 < V || whole) I::Store(out + r * ldo + v * L, acc[r][v]);
      else I::StoreFirst(out + r * ldo + v * L, tail, acc[r][v]);
    }
  }
}

// The same for `rows` rows (1 .. kRowTileVectors / V) and `vectors` registers per row (1 ..
// kRowTileVectors), both picked at compile time, from the largest down.
template <class I, int V, int R = I::kRowTileVectors / V>
static inline void AccumulateRowsOf(int rows, const float* s, int64_t lds, const int* off, const float* coef,
                                    int nnz, float bias, bool partial, const float* residual, int64_t ldr,
                                    bool relu, int width, float* out, int64_t ldo) {
  if constexpr (R > 1) {
    if (rows < R)
      return AccumulateRowsOf<I, V, R - 1>(rows, s, lds, off, coef, nnz, bias, partial, residual, ldr, relu,
                                           width, out, ldo);
  }
  AccumulateRows<I, R, V>(s, lds, off, coef, nnz, bias, partial, residual, ldr, relu, width, out, ldo);
}
template <class I, int V = I::kRowTileVectors>
static inline void AccumulateRowTile(int rows, int vectors, const float* s, int64_t lds, const int* off,
                                     const float* coef, int nnz, float bias, bool partial, const float* residual,
                                     int64_t ldr, bool relu, int width, float* out, int64_t ldo) {
  if constexpr (V > 1) {
    if (vectors < V)
      return AccumulateRowTile<I, V - 1>(rows, vectors, s, lds, off, coef, nnz, bias, partial, residual, ldr,
                                         relu, width, out, ldo);
  }
  AccumulateRowsOf<I, V>(rows, s, lds, off, coef, nnz, bias, partial, residual, ldr, relu, width, out, ldo);
}

// out[b * out_stride] = act(start + sum over entries of coef * s[(off + e) * count + b]) for
// b < count: one output position of one channel for `count` images at once (S laid out
// image-innermost); start is bias, or out's own values when `partial` (a sum taken block by
// block, OneOutputImages), and act is relu when set. Even and odd entries go to two accumulators:
// one alone waits on its multiply-add's latency at every entry.
template <class I>
static inline void GatherImages(const float* s, const int* off, const float* coef, int nnz, int e, int count,
                                float bias, bool partial, bool relu, float* out, int64_t out_stride) {
  for (int b0 = 0; b0 < count; b0 += I::kLanes) {
    const int here = std::min(count - b0, I::kLanes);
    const typename I::Mask mask = I::FirstLanes(here);
    float lanes[I::kLanes];
    typename I::Vec acc = I::Set(bias), odd = I::Zero();
    if (partial) {
      for (int b = 0; b < here; ++b) lanes[b] = out[(b0 + b) * out_stride];
      acc = I::LoadFirst(lanes, mask);
    }
    const auto src = [&](int j) { return s + (static_cast<int64_t>(off[j]) + e) * count + b0; };
    int j = 0;
    for (; j + 1 < nnz; j += 2) {
      acc = I::Fma(I::Broadcast(coef + j), I::LoadFirst(src(j), mask), acc);
      odd = I::Fma(I::Broadcast(coef + j + 1), I::LoadFirst(src(j + 1), mask), odd);
    }
    if (j < nnz) acc = I::Fma(I::Broadcast(coef + j), I::LoadFirst(src(j), mask), acc);
    acc = I::Add(acc, odd);
    if (relu) acc = I::Max(acc, I::Zero());
    I::Store(lanes, acc);
    for (int b = 0; b < here; ++b) out[(b0 + b) * out_stride] = lanes[b];
  }
}

// a . b over n floats
template <class I>
static inline float Dot(const float* a, const float* b, int n) {
  const int L = I::kLanes;
  typename I::Vec acc0 = I::Zero(), acc1 = I::Zero();
  int i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    acc0 = I::Fma(I::Load(a + i), I::Load(b + i), acc0);
    acc1 = I::Fma(I::Load(a + i + L), I::Load(b + i + L), acc1);
  }
  for (; i + L <= n; i += L) acc0 = I::Fma(I::Load(a + i), I::Load(b + i), acc0);
  float total = I::Sum(I::Add(acc0, acc1));
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

// out[r] = a[r] . b over n floats for R rows at once (a[r]: row r's start), b loaded once for all
template <class I, int R>
static inline void DotRows(const float* const* a, const float* b, int n, float* out) {
  typename I::Vec acc[R];
  for (int r = 0; r < R; ++r) acc[r] = I::Zero();
  int i = 0;
  for (; i + I::kLanes <= n; i += I::kLanes) {
    const typename I::Vec bv = I::Load(b + i);
    for (int r = 0; r < R; ++r) acc[r] = I::Fma(I::Load(a[r] + i), bv, acc[r]);
  }
  for (int r = 0; r < R; ++r) {
    float total = I::Sum(acc[r]);
    for (int j = i; j < n; ++j) total += a[r][j] * b[j];
    out[r] = total;
  }
}

// sum over entries of coef * s[off + e]: one register of entries per gather (outputs of a few
// pixels)
template <class I>
static inline float GatherDot(const float* s, const int* off, const float* coef, int nnz, int e) {
  typename I::Vec acc = I::Zero();
  int j = 0;
  for (; j + I::kLanes <= nnz; j += I::kLanes) acc = I::Fma(I::Load(coef + j), I::Gather(s, off + j, e), acc);
  float total = I::Sum(acc);
  for (; j < nnz; ++j) total += coef[j] * s[off[j] + e];
  return total;
}

// out[i] = act(a[i] + b[i]) for i < n
template <class I>
static inline void AddAct(const float* a, const float* b, int64_t n, bool relu, float* out) {
  int64_t i = 0;
  for (; i + I::kLanes <= n; i += I::kLanes) {
    const typename I::Vec v = I::Add(I::Load(a + i), I::Load(b + i));
    I::Store(out + i, relu ? I::Max(v, I::Zero()) : v);
  }
  for (; i < n; ++i) out[i] = relu ? std::max(a[i] + b[i], 0.f) : a[i] + b[i];
}

// out[i] = max(a[i], b[i]) for i < n (out may be a)
template <class I>
static inline void MaxOf(const float* a, const float* b, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + I::kLanes <= n; i += I::kLanes) I::Store(out + i, I::Max(I::Load(a + i), I::Load(b + i)));
  for (; i < n; ++i) out[i] = std::max(a[i], b[i]);
}

// acc[i] = max(acc[i], in[i]) for i < n
template <class I>
static inline void MaxInto(const float* in, int64_t n, float* acc) { MaxOf<I>(acc, in, n, acc); }

// out[i] = max over r < count of src(r)[i], for i < n: the first two sources as one maximum of two
// (no copy of the first).
template <class I, class Source>
static inline void MaxOfRows(const Source& src, int64_t count, int64_t n, float* out) {
  if (count == 1) {
    std::copy_n(src(0), n, out);
    return;
  }
  MaxOf<I>(src(0), src(1), n, out);
  for (int64_t r = 2; r < count; ++r) MaxInto<I>(src(r), n, out);
}

// Stride-phase splitting, AVX2 on every path (AVX-512 CPUs have AVX2; the split is a small
// part of the work).
// out[p * stride + j] = in[4 * j + p] for p < 4, j < 8 * blocks: a 4x4 transpose in each
// 128-bit lane, then the lanes' halves put back in order.
static inline void Deinterleave4(const float* in, int blocks, float* out, int64_t stride) {
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int b = 0; b < blocks; ++b, in += 32, out += 8) {
    const __m256 v0 = _mm256_loadu_ps(in), v1 = _mm256_loadu_ps(in + 8), v2 = _mm256_loadu_ps(in + 16),
                 v3 = _mm256_loadu_ps(in + 24);
    const __m256 t0 = _mm256_unpacklo_ps(v0, v1), t1 = _mm256_unpackhi_ps(v0, v1),
                 t2 = _mm256_unpacklo_ps(v2, v3), t3 = _mm256_unpackhi_ps(v2, v3);
    _mm256_storeu_ps(out, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0x44), order));
    _mm256_storeu_ps(out + stride, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0xEE), order));
    _mm256_storeu_ps(out + 2 * stride, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0x44), order));
    _mm256_storeu_ps(out + 3 * stride, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0xEE), order));
  }
}

// dst[j * ldd + i] = src[i * lds + j] for i < rows, j < cols, and 0 for rows <= i < zero_to: a
// matrix transposed in tiles of kLanes x kLanes floats in registers (those at its edges under
// masks), where a scalar loop stored one float into each of kLanes cache lines of dst in turn.
template <class I>
static inline void TransposeFloats(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst,
                                   int64_t ldd, int64_t zero_to = 0) {
  constexpr int L = I::kLanes;
  const int64_t end = std::max(rows, zero_to);
  for (int64_t i0 = 0; i0 < end; i0 += L) {
    const int64_t n = rows - i0;  // rows of this tile read (from L on: all)
    const int stored = static_cast<int>(std::min<int64_t>(L, end - i0));
    const typename I::Mask first_rows = I::FirstLanes(stored);
    for (int64_t j0 = 0; j0 < cols; j0 += L) {
      const int w = static_cast<int>(std::min<int64_t>(L, cols - j0));
      const typename I::Mask first_cols = I::FirstLanes(w);
      typename I::Vec t[L];
#pragma GCC unroll 16
      for (int l = 0; l < L; ++l) {
        const float* row = src + (i0 + l) * lds + j0;
        t[l] = l >= n ? I::Zero() : w == L ? I::Load(row) : I::LoadFirst(row, first_cols);
      }
      I::Transpose(t);
      for (int j = 0; j < w; ++j) {
        float* col = dst + (j0 + j) * ldd + i0;
        if (stored == L) I::Store(col, t[j]);
        else I::StoreFirst(col, first_rows, t[j]);
      }
    }
  }
}

// dst[0 .. n) = src[0 .. n) for the few floats of a strip's or a small map's row, inline: whole
// 8-float blocks with the last one overlapping its predecessor, two 4-float blocks below 8
// (memcpy calls, and masked stores, which AMD's CPUs microcode, cost more than the copy).
static inline void CopyFloats(const float* src, int64_t n, float* dst) {
  if (n >= 8) {
    for (int64_t i = 0; i + 8 < n; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
    _mm256_storeu_ps(dst + n - 8, _mm256_loadu_ps(src + n - 8));
  } else if (n >= 4) {
    _mm_storeu_ps(dst, _mm_loadu_ps(src));
    _mm_storeu_ps(dst + n - 4, _mm_loadu_ps(src + n - 4));
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

// out[p * stride + j] = in[2 * j + p] for p < 2, j < 8 * blocks
static inline void Deinterleave2(const float* in, int blocks, float* out, int64_t stride) {
  for (int b = 0; b < blocks; ++b, in += 16, out += 8) {
    const __m256 v0 = _mm256_loadu_ps(in), v1 = _mm256_loadu_ps(in + 8);
    _mm256_storeu_ps(out, Avx2::EvenLanes(v0, v1));
    _mm256_storeu_ps(out + stride, Avx2::OddLanes(v0, v1));
  }
}

// The row src (w floats) after pw zeros, split into its 2 stride phases as SplitRow would split
// the padded row, without the padded copy (stored at one offset and read back at another, it
// cost more than the split): out[q * stride + j] = src[2j + q - pw], written only where that is
// one of src's columns. Column x goes to phase (x + pw) % 2 at (x + pw) / 2.
static inline void SplitRowPadded2(const float* src, int64_t w, int64_t pw, float* out, int64_t stride) {
  float* even = out + (pw % 2) * stride + pw / 2;           // columns 0, 2, 4, ...
  float* odd = out + ((pw + 1) % 2) * stride + (pw + 1) / 2;  // columns 1, 3, 5, ...
  const int64_t blocks = w / 16;
  for (int64_t b = 0; b < blocks; ++b) {
    const __m256 v0 = _mm256_loadu_ps(src + 16 * b), v1 = _mm256_loadu_ps(src + 16 * b + 8);
    _mm256_storeu_ps(even + 8 * b, Avx2::EvenLanes(v0, v1));
    _mm256_storeu_ps(odd + 8 * b, Avx2::OddLanes(v0, v1));
  }
  int64_t x = 16 * blocks;
  if (w - x >= 8) {  // half a block: 4 even and 4 odd columns
    const __m256 v = _mm256_loadu_ps(src + x);
    _mm_storeu_ps(even + x / 2, _mm256_castps256_ps128(Avx2::EvenLanes(v, v)));
    _mm_storeu_ps(odd + x / 2, _mm256_castps256_ps128(Avx2::OddLanes(v, v)));
    x += 8;
  }
  for (int64_t e = x; e < w; e += 2) even[e / 2] = src[e];
  for (int64_t o = x + 1; o < w; o += 2) odd[o / 2] = src[o];
}

// out[q * stride + j] = row[j * sw + q] for q < sw, j < count (row holds count * sw floats): a
// row split into its stride phases, vectorised for strides 2 and 4.
static inline void SplitRow(const float* row, int sw, int64_t count, float* out, int64_t stride) {
  int64_t j = 0;
  if (sw == 2 || sw == 4) {
    const int blocks = static_cast<int>(count / 8);
    if (sw == 4) Deinterleave4(row, blocks, out, stride);
    else Deinterleave2(row, blocks, out, stride);
    j = blocks * 8;
  }
  for (; j < count; ++j)
    for (int q = 0; q < sw; ++q) out[q * stride + j] = row[j * sw + q];
}

#endif  // LCNN_LOOKUP_CONV_KERNELS_H_
