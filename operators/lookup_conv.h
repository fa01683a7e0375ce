// Attributes and vector kernels of lcnn_lookup_conv (see lookup_conv.cc).
#ifndef LCNN_LOOKUP_CONV_H_
#define LCNN_LOOKUP_CONV_H_

#include <immintrin.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <unordered_map>

#include "mxnet/lib_api.h"

using namespace mxnet::ext;  // NOLINT

static const int kTile = 64;  // floats per register tile: 8 AVX registers

// ------------------------------------------------------------------ attributes
struct Params {
  int kh, kw, sh, sw, ph, pw, num_filter;
  bool relu;
  bool residual = false;  // a 7th input added before act (a ResNet block's shortcut)
  int pool_kh = 0, pool_kw = 0, pool_sh = 1, pool_sw = 1, pool_ph = 0, pool_pw = 0;  // 0: no pooling
};

static inline bool ParsePair(const std::string& text, int* a, int* b) {
  std::string s;
  for (char ch : text) s += (ch == '(' || ch == ')' || ch == '[' || ch == ']' || ch == ',') ? ' ' : ch;
  std::istringstream in(s);
  if (!(in >> *a)) return false;
  if (!(in >> *b)) *b = *a;
  std::string rest;
  return !(in >> rest);
}

static inline MXReturnValue GetParams(const std::unordered_map<std::string, std::string>& attrs,
                                      Params* p) {
  static const char* known[] = {"kernel", "stride", "pad", "num_filter", "act", "pool_kernel",
                                "pool_stride", "pool_pad", "residual"};
  for (const auto& kv : attrs) {
    if (kv.first.rfind("__", 0) == 0) continue;  // MXNet's own annotations
    if (std::find_if(std::begin(known), std::end(known),
                     [&](const char* k) { return kv.first == k; }) == std::end(known)) {
      MX_ERROR_MSG << "lcnn_lookup_conv: unknown attribute '" << kv.first << "'";
      return MX_FAIL;
    }
  }
  auto get = [&](const char* key, const char* fallback) {
    auto it = attrs.find(key);
    return it == attrs.end() ? std::string(fallback) : it->second;
  };
  if (!attrs.count("kernel") || !attrs.count("num_filter")) {
    MX_ERROR_MSG << "lcnn_lookup_conv: attributes 'kernel' and 'num_filter' are required";
    return MX_FAIL;
  }
  if (!ParsePair(get("kernel", ""), &p->kh, &p->kw) || !ParsePair(get("stride", "1"), &p->sh, &p->sw) ||
      !ParsePair(get("pad", "0"), &p->ph, &p->pw)) {
    MX_ERROR_MSG << "lcnn_lookup_conv: kernel/stride/pad must be 'K' or '(K1, K2)'";
    return MX_FAIL;
  }
  std::istringstream nf(get("num_filter", ""));
  std::string extra;
  if (!(nf >> p->num_filter) || (nf >> extra) || p->num_filter < 1) {
    MX_ERROR_MSG << "lcnn_lookup_conv: num_filter must be a positive integer";
    return MX_FAIL;
  }
  std::string act = get("act", "none");
  if (act != "none" && act != "relu") {
    MX_ERROR_MSG << "lcnn_lookup_conv: act must be 'none' or 'relu', got '" << act << "'";
    return MX_FAIL;
  }
  p->relu = act == "relu";
  const std::string residual = get("residual", "0");
  if (residual != "0" && residual != "1" && residual != "False" && residual != "True") {
    MX_ERROR_MSG << "lcnn_lookup_conv: residual must be 0 or 1, got '" << residual << "'";
    return MX_FAIL;
  }
  p->residual = residual == "1" || residual == "True";
  if (p->residual && attrs.count("pool_kernel")) {
    MX_ERROR_MSG << "lcnn_lookup_conv: residual cannot be combined with pool_kernel";
    return MX_FAIL;
  }
  if (attrs.count("pool_kernel")) {
    if (!ParsePair(get("pool_kernel", ""), &p->pool_kh, &p->pool_kw) ||
        !ParsePair(get("pool_stride", "1"), &p->pool_sh, &p->pool_sw) ||
        !ParsePair(get("pool_pad", "0"), &p->pool_ph, &p->pool_pw) || p->pool_kh < 1 ||
        p->pool_kw < 1 || p->pool_sh < 1 || p->pool_sw < 1 || p->pool_ph < 0 || p->pool_pw < 0 ||
        p->pool_ph >= p->pool_kh || p->pool_pw >= p->pool_kw) {
      MX_ERROR_MSG << "lcnn_lookup_conv: pool_kernel/pool_stride must be >= 1 and pool_pad in [0, pool_kernel)";
      return MX_FAIL;
    }
  } else if (attrs.count("pool_stride") || attrs.count("pool_pad")) {
    MX_ERROR_MSG << "lcnn_lookup_conv: pool_stride/pool_pad given without pool_kernel";
    return MX_FAIL;
  }
  if (p->kh < 1 || p->kw < 1 || p->sh < 1 || p->sw < 1 || p->ph < 0 || p->pw < 0) {
    MX_ERROR_MSG << "lcnn_lookup_conv: kernel and stride must be >= 1, pad >= 0";
    return MX_FAIL;
  }
  return MX_SUCCESS;
}

// The operator's state (lookup_conv.cc), created for each node by the registration.
CustomStatefulOp* MakeLookupConv(const Params& p);

// Output size of a convolution or pooling window over n inputs (MXNet's 'valid' convention).
static inline int OutSize(int n, int kernel, int stride, int pad) { return (n + 2 * pad - kernel) / stride + 1; }

// ------------------------------------------------------------------ kernels
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

// out (R x width, row stride ldo) = d (R x m, row-major) x x (m x width, row stride ldx), R <= 6:
// 16-column strips keep 2R accumulators in registers while x streams by once (no packing),
// then an 8-column strip, then the last columns under a mask.
template <int R>
static inline void SmallGemmRows(const float* d, int m, const float* x, int64_t ldx, int64_t width,
                                 float* out, int64_t ldo) {
  int64_t j = 0;
  for (; j + 16 <= width; j += 16) {
    __m256 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int c = 0; c < m; ++c) {
      const __m256 v0 = _mm256_loadu_ps(x + c * ldx + j), v1 = _mm256_loadu_ps(x + c * ldx + j + 8);
      for (int r = 0; r < R; ++r) {
        const __m256 b = _mm256_broadcast_ss(d + r * m + c);
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
      for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(d + r * m + c), v, acc[r]);
    }
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(out + r * ldo + j, acc[r]);
  }
  if (j < width) {  // the last 1-7 columns, through masked loads and stores
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(width - j)),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int c = 0; c < m; ++c) {
      const __m256 v = _mm256_maskload_ps(x + c * ldx + j, mask);
      for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(d + r * m + c), v, acc[r]);
    }
    for (int r = 0; r < R; ++r) _mm256_maskstore_ps(out + r * ldo + j, mask, acc[r]);
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

#endif  // LCNN_LOOKUP_CONV_H_
