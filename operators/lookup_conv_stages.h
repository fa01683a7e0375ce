// The stages of lcnn_lookup_conv on one image (lookup_conv.cc runs them as its plan says):
// splitting into stride phases, the dictionary product, max-pooling and the shortcut. Each
// takes the number of threads it may use (1 when whole images run in parallel). The vector
// stages take the instruction set I (lookup_conv_isa.h) they are compiled for.
#ifndef LCNN_LOOKUP_CONV_STAGES_H_
#define LCNN_LOOKUP_CONV_STAGES_H_

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "lookup_conv_attrs.h"
#include "lookup_conv_kernels.h"

extern "C" void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                            const float* a, int lda, const float* b, int ldb, float beta, float* c,
                            int ldc);  // the OpenBLAS that libmxnet.so already loads
extern "C" void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float* a, int lda,
                            const float* x, int incx, float beta, float* y, int incy);
static const int kRowMajor = 101, kNoTrans = 111;

// OpenBLAS for products of more than this many rows and columns of an x above kSmallXBytes;
// below, OpenBLAS spends its time packing and SmallGemmRows streams x once instead.
static const int kBlasMinRows = 64;
static const int64_t kBlasMinCols = 256;
static const int64_t kSmallXBytes = 64 << 10;
// Column chunk of SmallGemmRows: stays in L2 (48 KB of x) while every 6-row block of D passes.
static const int64_t kChunkBytes = 48 << 10;
static const int kGemmRowBlock = 6;  // rows of D per register block (12 accumulators + 2 loads)

// pad(X) split into stride phases: out[c][py][px][y][x] = X[c][y*sh + py - ph][x*sw + px - pw],
// for `channels` planes of h x w. Only the input's own positions are written: the padding
// stays zero from the buffer's allocation.
static inline void SplitPhases(const Params& p, const Geometry& g, const float* x, int64_t channels, float* out,
                               int threads) {
#pragma omp parallel for num_threads(threads)
  for (int64_t c = 0; c < channels; ++c) {
    const bool simd = p.sw == 2 || p.sw == 4;  // strides 2 and 4: an AVX2 deinterleave of the padded row
    std::vector<float> padded(simd ? g.wq * p.sw + 32 : 0, 0.f);
    for (int64_t yi = 0; yi < g.h; ++yi) {
      const int64_t py = (yi + p.ph) % p.sh, yq = (yi + p.ph) / p.sh;
      const float* src = x + (c * g.h + yi) * g.w;
      float* dst = out + c * g.cols + py * p.sw * g.plane + yq * g.wq;
      if (p.sw == 1) {
        std::memcpy(dst + p.pw, src, g.w * sizeof(float));
      } else if (simd) {
        std::memcpy(padded.data() + p.pw, src, g.w * sizeof(float));
        SplitRow(padded.data(), p.sw, g.wq, dst, g.plane);
      } else {
        for (int px = 0; px < p.sw; ++px) {  // columns xi = xq * sw + px - pw
          float* row = dst + px * g.plane;
          const int64_t xi0 = ((px - p.pw) % p.sw + p.sw) % p.sw;
          for (int64_t xi = xi0, xq = (xi0 + p.pw) / p.sw; xi < g.w; xi += p.sw, ++xq) row[xq] = src[xi];
        }
      }
    }
  }
}

// out (rows.size() x cols) = the dictionary rows of D (k x m) listed in `rows` x x (m x cols).
// `d_rows_contiguous`: the listed rows are all of D in order (then D is passed to OpenBLAS as it is).
template <class I>
static inline void DictionaryProduct(const float* d, const std::vector<int>& rows, bool d_rows_contiguous,
                                     int64_t m, const float* x, int64_t cols, float* out, int threads,
                                     std::vector<float>* gathered) {
  const int64_t k = rows.size();
  const bool small_x = m * cols * static_cast<int64_t>(sizeof(float)) <= kSmallXBytes;
  if (!small_x && k > kBlasMinRows && cols >= kBlasMinCols) {
    const float* a = d;
    if (!d_rows_contiguous) {  // OpenBLAS wants the rows together
      gathered->resize(k * m);
      for (int64_t i = 0; i < k; ++i) std::memcpy(gathered->data() + i * m, d + rows[i] * m, m * sizeof(float));
      a = gathered->data();
    }
    cblas_sgemm(kRowMajor, kNoTrans, kNoTrans, k, cols, m, 1.f, a, m, x, cols, 0.f, out, cols);
    return;
  }
  if (cols == 1) {  // one column: a matrix-vector product, D streamed once
    if (d_rows_contiguous) {
      cblas_sgemv(kRowMajor, kNoTrans, k, m, 1.f, d, m, x, 1, 0.f, out, 1);
    } else {
#pragma omp parallel for num_threads(threads)
      for (int64_t i = 0; i < k; ++i) out[i] = Dot<I>(d + rows[i] * m, x, static_cast<int>(m));
    }
    return;
  }
  const int64_t strip = 2 * I::kLanes;  // SmallGemmRows' widest strip
  const int64_t chunk = std::max<int64_t>(strip, kChunkBytes / (m * sizeof(float)) / strip * strip);
  const int64_t chunks = (cols + chunk - 1) / chunk;
  const int64_t blocks = (k + kGemmRowBlock - 1) / kGemmRowBlock;
#pragma omp parallel for collapse(2) num_threads(threads)
  for (int64_t q = 0; q < chunks; ++q) {
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t j0 = q * chunk, width = std::min(chunk, cols - j0), r = blk * kGemmRowBlock;
      const float* row_ptrs[kGemmRowBlock];
      const int count = static_cast<int>(std::min<int64_t>(kGemmRowBlock, k - r));
      for (int i = 0; i < count; ++i) row_ptrs[i] = d + rows[r + i] * m;
      float* o = out + r * cols + j0;
      switch (count) {
        case 1: SmallGemmRows<I, 1>(row_ptrs, m, x + j0, cols, width, o, cols); break;
        case 2: SmallGemmRows<I, 2>(row_ptrs, m, x + j0, cols, width, o, cols); break;
        case 3: SmallGemmRows<I, 3>(row_ptrs, m, x + j0, cols, width, o, cols); break;
        case 4: SmallGemmRows<I, 4>(row_ptrs, m, x + j0, cols, width, o, cols); break;
        case 5: SmallGemmRows<I, 5>(row_ptrs, m, x + j0, cols, width, o, cols); break;
        default: SmallGemmRows<I, 6>(row_ptrs, m, x + j0, cols, width, o, cols);
      }
    }
  }
}

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
  float* padded = scratch;
  float* phases = p.pool_sw == 1 ? padded : scratch + row_floats;  // phase q: padded[q], padded[q + sw], ...
  std::fill(padded, padded + row_floats, -std::numeric_limits<float>::infinity());
  for (int64_t py = 0; py < g.yo; ++py) {
    const int64_t y0 = std::max<int64_t>(0, py * p.pool_sh - p.pool_ph);
    const int64_t y1 = std::min<int64_t>(g.ho, py * p.pool_sh - p.pool_ph + p.pool_kh);
    const auto in_row = [&](int64_t r) { return in + (y0 + r) * g.wq; };
    MaxOfRows<I>(in_row, y1 - y0, g.wo, padded + p.pool_pw);
    if (p.pool_sw > 1) SplitRow(padded, p.pool_sw, phase_floats, phases, phase_floats);
    const auto column = [&](int64_t dx) { return phases + (dx % p.pool_sw) * phase_floats + dx / p.pool_sw; };
    MaxOfRows<I>(column, p.pool_kw, g.xo, out + py * g.xo);
  }
}

#endif  // LCNN_LOOKUP_CONV_STAGES_H_
