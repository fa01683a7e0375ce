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
  const bool three_by_two = p.pool_kw == 3 && p.pool_sw == 2;  // no padded row: MaxPoolRow3Stride2
  float* padded = scratch;
  float* phases = p.pool_sw == 1 ? padded : scratch + row_floats;  // phase q: padded[q], padded[q + sw], ...
  if (!three_by_two) std::fill(padded, padded + row_floats, -std::numeric_limits<float>::infinity());
  for (int64_t py = 0; py < g.yo; ++py) {
    const int64_t y0 = std::max<int64_t>(0, py * p.pool_sh - p.pool_ph);
    const int64_t y1 = std::min<int64_t>(g.ho, py * p.pool_sh - p.pool_ph + p.pool_kh);
    const auto in_row = [&](int64_t r) { return in + (y0 + r) * g.wq; };
    if (three_by_two) {
      MaxPoolRow3Stride2(in_row, y1 - y0, g.wo, g.wq, p.pool_pw, g.xo, out + py * g.xo);
      continue;
    }
    MaxOfRows<I>(in_row, y1 - y0, g.wo, padded + p.pool_pw);
    if (p.pool_sw > 1) SplitRow(padded, p.pool_sw, phase_floats, phases, phase_floats);
    const auto column = [&](int64_t dx) { return phases + (dx % p.pool_sw) * phase_floats + dx / p.pool_sw; };
    MaxOfRows<I>(column, p.pool_kw, g.xo, out + py * g.xo);
  }
}

#endif  // LCNN_LOOKUP_CONV_EPILOGUE_H_
