// AVX2 + FMA vector kernels of lcnn_lookup_conv (see lookup_conv.cc). Only translation units
// compiled with -mavx2 -mfma include this header; they run after initialize() checked the CPU.
#ifndef LCNN_LOOKUP_CONV_KERNELS_H_
#define LCNN_LOOKUP_CONV_KERNELS_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

static const int kTile = 64;  // floats per register tile: 8 AVX registers

// Lanes [0, n) of an 8-float mask (n in 1..8).
static inline __m256i TailMask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// out[0..8V) = act(bias + sum over entries of coef * s[off .. off + 8V)); the V accumulators
// stay in registers.
template <int V>
static inline void AccumulateTile(const float* s, const int* off, const float* coef, int nnz,
                                  float bias, bool relu, float* out) {
  __m256 acc[V];
  for (int v = 0; v < V; ++v) acc[v] = _mm256_set1_ps(bias);
  for (int j = 0; j < nnz; ++j) {
    const __m256 c = _mm256_broadcast_ss(coef + j);
    const float* src = s + off[j];
    for (int v = 0; v < V; ++v) acc[v] = _mm256_fmadd_ps(c, _mm256_loadu_ps(src + 8 * v), acc[v]);
  }
  if (relu)
    for (int v = 0; v < V; ++v) acc[v] = _mm256_max_ps(acc[v], _mm256_setzero_ps());
  for (int v = 0; v < V; ++v) _mm256_storeu_ps(out + 8 * v, acc[v]);
}

// out (R x width, row stride ldo) = the R dictionary rows (each m floats) x x (m x width, row
// stride ldx), R <= 6: 16-column strips keep 2R accumulators in registers while x streams by once
// (no packing), then an 8-column strip, then the last columns under a mask.
template <int R>
static inline void SmallGemmRows(const float* const* rows, int m, const float* x, int64_t ldx, int64_t width,
                                 float* out, int64_t ldo) {
  int64_t j = 0;
  for (; j + 16 <= width; j += 16) {
    __m256 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int c = 0; c < m; ++c) {
      const __m256 v0 = _mm256_loadu_ps(x + c * ldx + j), v1 = _mm256_loadu_ps(x + c * ldx + j + 8);
      for (int r = 0; r < R; ++r) {
        const __m256 b = _mm256_broadcast_ss(rows[r] + c);
        acc[r][0] = _mm256_fmadd_ps(b, v0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(b, v1, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(out + r * ldo + j, acc[r][0]);
      _mm256_storeu_ps(out + r * ldo + j + 8, acc[r][1]);
    }
  }
  for (; j + 8 <= width; j += 8) {
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int c = 0; c < m; ++c) {
      const __m256 v = _mm256_loadu_ps(x + c * ldx + j);
      for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(rows[r] + c), v, acc[r]);
    }
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(out + r * ldo + j, acc[r]);
  }
  if (j < width) {  // the last 1-7 columns, through masked loads and stores
    const __m256i mask = TailMask(static_cast<int>(width - j));
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int c = 0; c < m; ++c) {
      const __m256 v = _mm256_maskload_ps(x + c * ldx + j, mask);
      for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(rows[r] + c), v, acc[r]);
    }
    for (int r = 0; r < R; ++r) _mm256_maskstore_ps(out + r * ldo + j, mask, acc[r]);
  }
}

// acc[0..count) = bias + sum over entries of coef * s[(off + e) * count + b] for b < count: one
// output position of one channel for `count` images at once (S laid out image-innermost).
static inline void GatherImages(const float* s, const int* off, const float* coef, int nnz, int e, int count,
                                float bias, bool relu, float* out, int64_t out_stride) {
  for (int b0 = 0; b0 < count; b0 += 8) {
    const __m256i mask = TailMask(std::min(8, count - b0));
    __m256 acc = _mm256_set1_ps(bias);
    for (int j = 0; j < nnz; ++j) {
      const float* src = s + (static_cast<int64_t>(off[j]) + e) * count + b0;
      acc = _mm256_fmadd_ps(_mm256_broadcast_ss(coef + j), _mm256_maskload_ps(src, mask), acc);
    }
    if (relu) acc = _mm256_max_ps(acc, _mm256_setzero_ps());
    float lanes[8];
    _mm256_storeu_ps(lanes, acc);
    for (int b = b0; b < std::min(count, b0 + 8); ++b) out[b * out_stride] = lanes[b - b0];
  }
}

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

// out[p * stride + j] = in[2 * j + p] for p < 2, j < 8 * blocks
static inline void Deinterleave2(const float* in, int blocks, float* out, int64_t stride) {
  for (int b = 0; b < blocks; ++b, in += 16, out += 8) {
    const __m256 v0 = _mm256_loadu_ps(in), v1 = _mm256_loadu_ps(in + 8);
    const __m256d even = _mm256_castps_pd(_mm256_shuffle_ps(v0, v1, 0x88)),
                  odd = _mm256_castps_pd(_mm256_shuffle_ps(v0, v1, 0xDD));
    _mm256_storeu_ps(out, _mm256_castpd_ps(_mm256_permute4x64_pd(even, 0xD8)));
    _mm256_storeu_ps(out + stride, _mm256_castpd_ps(_mm256_permute4x64_pd(odd, 0xD8)));
  }
}

// a . b over n floats
static inline float Dot(const float* a, const float* b, int n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float lanes[8];
  _mm256_storeu_ps(lanes, _mm256_add_ps(acc0, acc1));
  float total = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

// sum over entries of coef * s[off + e]: eight entries per gather (outputs of a few pixels)
static inline float GatherDot(const float* s, const int* off, const float* coef, int nnz, int e) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i shift = _mm256_set1_epi32(e);
  int j = 0;
  for (; j + 8 <= nnz; j += 8) {
    __m256i idx = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(off + j)), shift);
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(coef + j), _mm256_i32gather_ps(s, idx, 4), acc);
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, acc);
  float total = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
  for (; j < nnz; ++j) total += coef[j] * s[off[j] + e];
  return total;
}

#endif  // LCNN_LOOKUP_CONV_KERNELS_H_
