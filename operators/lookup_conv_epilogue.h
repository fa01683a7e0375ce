// The epilogue of lcnn_lookup_conv's lookup stage for planes accumulated in the extended layout
// (rows wq apart): the shortcut added before act, and the fused max pooling. Written once for any
// instruction set of lookup_conv_isa.h (template parameter I); lookup_conv.cc runs them per channel.
#ifndef LCNN_LOOKUP_CONV_EPILOGUE_H_
#define LCNN_LOOKUP_CONV_EPILOGUE_H_

#include <algorithm>
#include <cstdint>
#include <limits>

#include "lookup_conv_attrs.h"
#include "lookup_conv_kernels.h"

// out = act(ext + residual) over the (ho x wo) outputs (ext's rows are wq apart).
template <class I>
static inline void AddResidual(const Params& p, const Geometry& g, const float* ext, const float* residual,
                               float* out) {
  for (int64_t oy = 0; oy < g.ho; ++oy) AddAct<I>(ext + oy * g.wq, residual + oy * g.wo, g.wo, p.relu, out + oy * g.wo);
}

// One output row of max pooling with a window 3 columns wide at column stride 2 (ResNet-18's
// and AlexNet's): out[x] = max over the window's 3 rows `row` (fewer repeat one: no maximum
// changes) and columns [2x - pw, 2x - pw + 3) within [0, wo), for x < xo (pw < 3). The rows' maxima
// go a register of columns at a time (columns past wo masked: neither read nor kept), taken apart
// into their even and odd columns; the third column of each window is the even ones shifted by
// one, the next register's first shifted in. No row is stored and read back at other offsets as
// the general pooling does (its loads waited on the stores). AlexNet's conv1 pooling alone in C++
// (64 planes of 55x55 -> 27x27), a vector of 8 windows at a time, each taking its 17 columns in 4
// overlapping loads a row: 0.72 ns an output; this way 0.41 (Avx2), 0.34 (Avx512); conv2's
// (192 planes of 27x27) 0.84 -> 0.57 and 0.54, conv5's (256 of 13x13) 2.5 -> 1.1.
template <class I>
static inline void MaxPoolRow3Stride2(const float* const (&row)[3], int64_t wo, int64_t pw, int64_t xo, float* out) {
  using Vec = typename I::Vec;
  constexpr int L = I::kLanes;
  const Vec none = I::Set(-std::numeric_limits<float>::infinity());
  const float *r0 = row[0], *r1 = row[1], *r2 = row[2];
  // the rows' maxima over columns [c, c + L) (c >= 0), -inf from wo on
  const auto columns = [&](int64_t c) {
    if (c + L <= wo) return I::Max(I::Max(I::Load(r0 + c), I::Load(r1 + c)), I::Load(r2 + c));
    if (c >= wo) return none;
    const auto m = I::FirstLanes(static_cast<int>(wo - c));
    return I::Keep(m, I::Max(I::Max(I::LoadFirst(r0 + c, m), I::LoadFirst(r1 + c, m)), I::LoadFirst(r2 + c, m)));
  };
  // columns [-pw, L - pw): pw lanes of padding, then column 0's register
  Vec lo = pw == 0 ? columns(0)
                   : pw == 1 ? I::template ShiftIn<L - 1>(none, columns(0)) : I::template ShiftIn<L - 2>(none, columns(0));
  Vec hi = columns(L - pw);
  for (int64_t x0 = 0; x0 < xo; x0 += L) {  // lo, hi: columns [2 x0 - pw, 2 x0 - pw + 2L)
    const Vec even = I::EvenLanes(lo, hi), odd = I::OddLanes(lo, hi);
    const int64_t next = 2 * (x0 + L) - pw;
    lo = columns(next);
    const Vec v = I::Max(I::Max(even, odd), I::template ShiftIn<1>(even, lo));
    if (x0 + L <= xo) {
      I::Store(out + x0, v);
      hi = columns(next + L);
    } else {
      I::StoreFirst(out + x0, I::FirstLanes(static_cast<int>(xo - x0)), v);
    }
  }
}

// Max pooling of the (ho x wo) outputs in the extended plane (rows wq apart): the window's rows
// first, into a row padded with -inf (`PoolRowFloats`), then its columns: the padded row split
// into pool_sw phases makes every column offset of the window one vectorised max over xo.
static inline int64_t PoolRowFloats(const Params& p, const Geometry& g) {
  const int64_t block = 8 * p.pool_sw;  // SplitRow's vector blocks: 8 outputs per phase
  const int64_t used = std::max(p.pool_pw + g.wo, (g.xo - 1) * p.pool_sw + p.pool_kw);
  return (used + block - 1) / block * block;
}
// Scratch of MaxPool: the padded row and its phases.
static inline int64_t PoolScratchFloats(const Params& p, const Geometry& g) { return 2 * PoolRowFloats(p, g); }

template <class I>
static inline void MaxPool(const Params& p, const Geometry& g, const float* in, float* out, float* scratch) {
  const int64_t row_floats = PoolRowFloats(p, g), phase_floats = row_floats / p.pool_sw;
  // no padded row: MaxPoolRow3Stride2
  const bool three_by_two = p.pool_kh <= 3 && p.pool_kw == 3 && p.pool_sw == 2;
  float* padded = scratch;
  float* phases = p.pool_sw == 1 ? padded : scratch + row_floats;  // phase q: padded[q], padded[q + sw], ...
  if (!three_by_two) std::fill(padded, padded + row_floats, -std::numeric_limits<float>::infinity());
  for (int64_t py = 0; py < g.yo; ++py) {
    const int64_t y0 = std::max<int64_t>(0, py * p.pool_sh - p.pool_ph);
    const int64_t y1 = std::min<int64_t>(g.ho, py * p.pool_sh - p.pool_ph + p.pool_kh);
    const auto in_row = [&](int64_t r) { return in + (y0 + r) * g.wq; };
    if (three_by_two) {
      // (every window has a row: MakeGeometry's output size)
      const int64_t last = y1 - y0 - 1;
      const float* const rows[3] = {in_row(0), in_row(std::min<int64_t>(1, last)), in_row(std::min<int64_t>(2, last))};
      MaxPoolRow3Stride2<I>(rows, g.wo, p.pool_pw, g.xo, out + py * g.xo);
      continue;
    }
    MaxOfRows<I>(in_row, y1 - y0, g.wo, padded + p.pool_pw);
    if (p.pool_sw > 1) SplitRow(padded, p.pool_sw, phase_floats, phases, phase_floats);
    const auto column = [&](int64_t dx) { return phases + (dx % p.pool_sw) * phase_floats + dx / p.pool_sw; };
    MaxOfRows<I>(column, p.pool_kw, g.xo, out + py * g.xo);
  }
}

#endif  // LCNN_LOOKUP_CONV_EPILOGUE_H_
