// lcnn_lookup_conv: the sparse lookup convolution of LCNN, for inference, as an MXNet 1.9
// custom-operator library (lib_api). Its inputs, output and attributes are the contract of
// lookup_conv_format.h; attributes and sizes are checked in lookup_conv_attrs.h, the
// operator is registered in lookup_conv_register.cc, the vector kernels are in
// lookup_conv_kernels.h. This file is the operator's state and its forward pass:
//
//   S = D x pad(X)   (a dense 1x1 product, computed as one GEMM)
//   Y[f] = pool(act(bias[f] + sum over P[f]'s entries of coef * (S[d] shifted by (r, c))))
//
// Strided layers split pad(X) into stride-phase planes first, so that every tap reads
// contiguous rows; each output plane is accumulated in 64-float register tiles over all
// of its channel's entries; the offsets are computed once per shape and CSR content.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "lookup_conv_attrs.h"
#include "lookup_conv_kernels.h"

extern "C" void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                            const float* a, int lda, const float* b, int ldb, float beta, float* c,
                            int ldc);  // the OpenBLAS that libmxnet.so already loads
extern "C" void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float* a, int lda,
                            const float* x, int incx, float beta, float* y, int incy);
static const int kRowMajor = 101, kNoTrans = 111;

// ------------------------------------------------------------------ the operator
class LookupConv : public CustomStatefulOp {
 public:
  explicit LookupConv(const Params& p) : p_(p) {}

  // inputs and output as lookup_conv_format.h describes them
  MXReturnValue Forward(std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                        const OpResource& res) override {
    MXTensor &x = (*inputs)[kData], &dict = (*inputs)[kDictionary];
    if (Prepare(*inputs) != MX_SUCCESS) return MX_FAIL;
    const int64_t batch = x.shape[0];
    const float* xd = x.data<float>();
    const float* bias = (*inputs)[kBias].data<float>();
    const float* coefs = (*inputs)[kCoefs].data<float>();
    const int* indptr = (*inputs)[kIndptr].data<int>();
    float* y = (*outputs)[0].data<float>();
    const float* residual = p_.residual ? (*inputs)[kResidual].data<float>() : nullptr;
    const int threads = std::max(1, omp_get_max_threads());
    const size_t per_thread = ext_alloc_ + (p_.pool_kh ? static_cast<size_t>(ho_) * wo_ : 0);
    scratch_.resize(static_cast<size_t>(threads) * per_thread);
    const int64_t out_plane = static_cast<int64_t>(yo_) * xo_;
    // only the dictionary entries P refers to (all of them, unless P is very sparse)
    const float* d = dict.data<float>();
    if (kc_ < k_ && !entries_) {
      for (int i = 0; i < kc_; ++i) std::memcpy(dc_.data() + i * m_, d + rows_[i] * m_, m_ * sizeof(float));
      d = dc_.data();
    }
    for (int64_t b = 0; b < batch; ++b) {
      const float* xb = xd + b * m_ * h_ * w_;
      if (entries_) {  // few outputs (fully connected layers): only the S values read below
        SplitPhases(xb, m_, xp_.data());
        Entries(dict.data<float>());
      } else if (kc_ == 0) {
        // no lookups at all: every channel is a constant
      } else if (split_s_) {  // S on the unpadded input, then S (k planes, fewer than m) is split
        DictionaryProduct(d, kc_, xb, static_cast<int64_t>(h_) * w_, t_.data());
        SplitPhases(t_.data(), kc_, s_.data());
      } else {
        SplitPhases(xb, m_, xp_.data());
        DictionaryProduct(d, kc_, xp_.data(), cols_, s_.data());
      }
      float* yb = y + b * static_cast<int64_t>(p_.num_filter) * out_plane;
      // S larger than L2 and many entries per channel: each tile position for every channel in
      // turn, so that the S rows around it stay in L2 (channel by channel, each channel would
      // sweep all of S)
      const bool tile_major = !entries_ && ext_ >= kFewOutputs && static_cast<int64_t>(kc_) * cols_ > (64 << 10) &&
                              offsets_.size() >= 16 * static_cast<size_t>(p_.num_filter);
      if (tile_major) {
        all_ext_.resize(static_cast<size_t>(p_.num_filter) * ext_alloc_);
        const int tiles = (ext_ + kTile - 1) / kTile;
        const bool relu = p_.relu && !residual;
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int ti = 0; ti < tiles; ++ti)
          for (int f = 0; f < p_.num_filter; ++f)
            if (indptr[f + 1] > indptr[f])
              Tile(ti * kTile, offsets_.data() + indptr[f], coefs + indptr[f], indptr[f + 1] - indptr[f],
                   bias[f], relu, all_ext_.data() + static_cast<size_t>(f) * ext_alloc_);
      }
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
      for (int f = 0; f < p_.num_filter; ++f) {
        float* own = scratch_.data() + static_cast<size_t>(omp_get_thread_num()) * per_thread;
        float* ext = tile_major ? all_ext_.data() + static_cast<size_t>(f) * ext_alloc_ : own;
        Channel(f, indptr[f], indptr[f + 1] - indptr[f], coefs, bias[f], ext, own + ext_alloc_,
                residual ? residual + (b * p_.num_filter + f) * out_plane : nullptr, yb + f * out_plane,
                tile_major);
      }
    }
    return MX_SUCCESS;
  }

 private:
  // Geometry for the input shape, offsets for the CSR content: recomputed only on change.
  MXReturnValue Prepare(std::vector<MXTensor>& in) {
    const int64_t m = in[kData].shape[1], h = in[kData].shape[2], w = in[kData].shape[3],
                  k = in[kDictionary].shape[0];
    if (m != m_ || h != h_ || w != w_ || k != k_) {
      Geometry g;  // every size checked to fit the 32-bit offsets below (lookup_conv_attrs.h)
      if (MakeGeometry(p_, m, h, w, k, &g) != MX_SUCCESS) return MX_FAIL;
      m_ = m, h_ = h, w_ = w, k_ = k;
      hp_ = g.hp, wp_ = g.wp, ho_ = g.ho, wo_ = g.wo, yo_ = g.yo, xo_ = g.xo, hq_ = g.hq, wq_ = g.wq;
      ext_ = g.ext, plane_ = g.plane, cols_ = g.cols;
      // D x pad(X) and pad(D x X) are equal: split whichever has fewer channels
      split_s_ = k_ < m_;
      xp_.assign(split_s_ ? 0 : static_cast<size_t>(m_) * cols_, 0.f);
      t_.assign(split_s_ ? static_cast<size_t>(k_) * h_ * w_ : 0, 0.f);
      s_.assign(static_cast<size_t>(k_) * cols_ + 2 * kTile, 0.f);
      ext_alloc_ = (ext_ + kTile - 1) / kTile * kTile;
      indptr_.clear();  // forces the offsets to be rebuilt for this geometry
    }
    MXTensor &ptr = in[kIndptr], &idx = in[kIndices];
    const size_t n1 = ptr.shape[0], nnz = idx.shape[0];
    if (indptr_.size() == n1 && indices_.size() == nnz &&
        !std::memcmp(indptr_.data(), ptr.data<int>(), n1 * sizeof(int)) &&
        !std::memcmp(indices_.data(), idx.data<int>(), nnz * sizeof(int)))
      return MX_SUCCESS;
    return BuildOffsets(ptr.data<int>(), n1, idx.data<int>(), nnz);
  }

  MXReturnValue BuildOffsets(const int* ptr, size_t n1, const int* idx, size_t nnz) {
    if (ptr[0] != 0 || ptr[n1 - 1] != static_cast<int>(nnz)) {
      MX_ERROR_MSG << "lcnn_lookup_conv: indptr must start at 0 and end at len(indices) = " << nnz
                   << ", got " << ptr[0] << " .. " << ptr[n1 - 1];
      return MX_FAIL;
    }
    for (size_t f = 0; f + 1 < n1; ++f) {
      if (ptr[f + 1] < ptr[f]) {
        MX_ERROR_MSG << "lcnn_lookup_conv: indptr decreases at row " << f;
        return MX_FAIL;
      }
    }
    const int taps = p_.kh * p_.kw, limit = k_ * taps;
    std::vector<int> compact(k_, -1);  // dictionary entry -> its row in the compact S
    for (size_t j = 0; j < nnz; ++j) {
      if (idx[j] < 0 || idx[j] >= limit) {
        MX_ERROR_MSG << "lcnn_lookup_conv: index " << idx[j] << " at entry " << j
                     << " is outside [0, k*kh*kw = " << limit << ")";
        return MX_FAIL;
      }
      compact[idx[j] / taps] = 0;
    }
    rows_.clear();
    for (int d = 0; d < k_; ++d)
      if (compact[d] == 0) compact[d] = static_cast<int>(rows_.size()), rows_.push_back(d);
    kc_ = static_cast<int>(rows_.size());
    dc_.resize(static_cast<size_t>(kc_) * m_);
    offsets_.resize(nnz);
    for (size_t j = 0; j < nnz; ++j) {
      int d, r, c;
      UnpackIndex(idx[j], p_.kh, p_.kw, &d, &r, &c);
      const int phase = (r % p_.sh) * p_.sw + c % p_.sw;
      offsets_[j] = static_cast<int>(compact[d] * cols_ + phase * plane_ + (r / p_.sh) * wq_ + c / p_.sw);
    }
    // layers with a few outputs per channel read few S values: compute just those, when that
    // is under a quarter of S
    needed_.clear();
    if (ext_ < kFewOutputs) {
      for (size_t j = 0; j < nnz; ++j)
        for (int e = 0; e < ext_; ++e)
          if (e % wq_ < wo_) needed_.push_back(offsets_[j] + e);  // the columns kept
      std::sort(needed_.begin(), needed_.end());
      needed_.erase(std::unique(needed_.begin(), needed_.end()), needed_.end());
    }
    entries_ = ext_ < kFewOutputs && !needed_.empty() && needed_.size() * 4 <= static_cast<size_t>(kc_) * cols_;
    if (entries_) {
      xp_.resize(static_cast<size_t>(m_) * cols_);  // zero padding kept: resize keeps contents
      xt_.resize(static_cast<size_t>(cols_) * m_);
    }
    indptr_.assign(ptr, ptr + n1);
    indices_.assign(idx, idx + nnz);
    return MX_SUCCESS;
  }

  // pad(X) split into stride phases: xp[c][py][px][y][x] = X[c][y*sh + py - ph][x*sw + px - pw],
  // for `channels` planes of h x w (the input's, or S's). Only the input's own positions are
  // written: the padding stays zero from the allocation.
  void SplitPhases(const float* x, int channels, float* out) {
#pragma omp parallel for num_threads(std::max(1, omp_get_max_threads()))
    for (int c = 0; c < channels; ++c) {
      // strides 2 and 4: the padded row, then an AVX2 deinterleave of blocks of 8 per phase
      const bool simd = p_.sw == 2 || p_.sw == 4;
      std::vector<float> padded(simd ? wq_ * p_.sw + 32 : 0, 0.f);
      const int blocks = wq_ / 8;
      for (int yi = 0; yi < h_; ++yi) {
        const int py = (yi + p_.ph) % p_.sh, yq = (yi + p_.ph) / p_.sh;
        const float* src = x + (static_cast<int64_t>(c) * h_ + yi) * w_;
        float* dst = out + c * cols_ + py * p_.sw * plane_ + static_cast<int64_t>(yq) * wq_;
        if (p_.sw == 1) {
          std::memcpy(dst + p_.pw, src, w_ * sizeof(float));
          continue;
        }
        if (simd) {
          std::memcpy(padded.data() + p_.pw, src, w_ * sizeof(float));
          if (p_.sw == 4) Deinterleave4(padded.data(), blocks, dst, plane_);
          else Deinterleave2(padded.data(), blocks, dst, plane_);
          for (int xq = blocks * 8; xq < wq_; ++xq)
            for (int px = 0; px < p_.sw; ++px) dst[px * plane_ + xq] = padded[xq * p_.sw + px];
          continue;
        }
        for (int px = 0; px < p_.sw; ++px) {  // columns xi = xq * sw + px - pw
          float* row = dst + px * plane_;
          const int xi0 = ((px - p_.pw) % p_.sw + p_.sw) % p_.sw;
          for (int xi = xi0, xq = (xi0 + p_.pw) / p_.sw; xi < w_; xi += p_.sw, ++xq) row[xq] = src[xi];
        }
      }
    }
  }

  // The S values in needed_ only: S[row, pos] = D[rows_[row]] . Xp[:, pos], over Xp transposed.
  void Entries(const float* d) {
    const float* xt = xp_.data();
    if (cols_ > 1) {
      for (int c = 0; c < m_; ++c)
        for (int64_t pos = 0; pos < cols_; ++pos) xt_[pos * m_ + c] = xp_[c * cols_ + pos];
      xt = xt_.data();
    }
    const int64_t count = static_cast<int64_t>(needed_.size());
#pragma omp parallel for schedule(static) num_threads(std::max(1, omp_get_max_threads()))
    for (int64_t i = 0; i < count; ++i) {
      const int o = needed_[i];
      s_[o] = Dot(d + static_cast<int64_t>(rows_[o / cols_]) * m_, xt + (o % cols_) * m_, m_);
    }
  }

  // out (k x cols) = D (k x m) x x (m x cols). Large products (k > 64 and 256+ columns of a
  // large x) go to OpenBLAS's SGEMM, single columns are a GEMV; the rest, where OpenBLAS would
  // spend its time packing, through SmallGemmRows.
  void DictionaryProduct(const float* d, int k, const float* x, int64_t cols, float* out) {
    const bool small_x = static_cast<int64_t>(m_) * cols * sizeof(float) <= (64 << 10);
    if (cols == 1) {
      cblas_sgemv(kRowMajor, kNoTrans, k, m_, 1.f, d, m_, x, 1, 0.f, out, 1);
    } else if (!small_x && k > 64 && cols >= 256) {
      cblas_sgemm(kRowMajor, kNoTrans, kNoTrans, k, cols, m_, 1.f, d, m_, x, cols, 0.f, out, cols);
    } else {
      // column chunks that stay in L2 while every 6-row block of D passes over them
      const int64_t chunk = std::max<int64_t>(16, (48 << 10) / (m_ * sizeof(float)) / 16 * 16);
      const int64_t chunks = (cols + chunk - 1) / chunk;
#pragma omp parallel for num_threads(std::max(1, omp_get_max_threads()))
      for (int64_t q = 0; q < chunks; ++q) {
        const int64_t j0 = q * chunk, width = std::min(chunk, cols - j0);
        for (int r = 0; r < k; r += 6) {
          const float* dr = d + r * m_;
          float* o = out + r * cols + j0;
          switch (std::min(6, k - r)) {
            case 1: SmallGemmRows<1>(dr, m_, x + j0, cols, width, o, cols); break;
            case 2: SmallGemmRows<2>(dr, m_, x + j0, cols, width, o, cols); break;
            case 3: SmallGemmRows<3>(dr, m_, x + j0, cols, width, o, cols); break;
            case 4: SmallGemmRows<4>(dr, m_, x + j0, cols, width, o, cols); break;
            case 5: SmallGemmRows<5>(dr, m_, x + j0, cols, width, o, cols); break;
            default: SmallGemmRows<6>(dr, m_, x + j0, cols, width, o, cols);
          }
        }
      }
    }
  }

  // One output channel: accumulate its entries over the extended plane (ho x wq), then add the
  // bias, apply act, and keep wo columns (into ``plane``, max-pooled into ``out``, if pooling).
  void Channel(int f, int start, int nnz, const float* coefs, float bias, float* ext, float* plane,
               const float* residual, float* out, bool accumulated) {
    const int* off = offsets_.data() + start;
    const float* coef = coefs + start;
    if (nnz == 0 && !residual) {  // no lookups: the channel is pool(act(bias)), a constant
      std::fill(out, out + yo_ * xo_, p_.relu ? std::max(bias, 0.f) : bias);
      return;
    }
    if (nnz == 0) {  // act(bias + residual)
      std::fill(ext, ext + ext_, bias);
      return AddResidual(ext, residual, out);
    }
    const bool relu = p_.relu && !residual;  // with a residual, act comes after the addition
    if (ext_ < kFewOutputs) {  // a few outputs (fully connected layers): gather over entries
      for (int e = 0; e < ext_; ++e) {
        if (e % wq_ >= wo_) continue;  // only the columns kept
        const float v = GatherDot(s_.data(), off, coef, nnz, e) + bias;
        ext[e] = relu ? std::max(v, 0.f) : v;
      }
    } else if (!accumulated) {  // bias and act applied as each tile is stored
      for (int t = 0; t < ext_; t += kTile) Tile(t, off, coef, nnz, bias, relu, ext);
    }
    if (residual) {
      AddResidual(ext, residual, out);
    } else if (p_.pool_kh) {
      MaxPool(ext, out, plane);
    } else {  // the extended rows (wq wide) hold the wo columns kept
      for (int oy = 0; oy < ho_; ++oy) std::memcpy(out + oy * wo_, ext + oy * wq_, wo_ * sizeof(float));
    }
  }

  // ext[t .. t + 64) of one channel (fewer at the plane's end)
  void Tile(int t, const int* off, const float* coef, int nnz, float bias, bool relu, float* ext) const {
    const float* s = s_.data() + t;
    switch (std::min(8, (ext_ - t + 7) / 8)) {
      case 1: AccumulateTile<1>(s, off, coef, nnz, bias, relu, ext + t); break;
      case 2: AccumulateTile<2>(s, off, coef, nnz, bias, relu, ext + t); break;
      case 3: AccumulateTile<3>(s, off, coef, nnz, bias, relu, ext + t); break;
      case 4: AccumulateTile<4>(s, off, coef, nnz, bias, relu, ext + t); break;
      case 5: AccumulateTile<5>(s, off, coef, nnz, bias, relu, ext + t); break;
      case 6: AccumulateTile<6>(s, off, coef, nnz, bias, relu, ext + t); break;
      case 7: AccumulateTile<7>(s, off, coef, nnz, bias, relu, ext + t); break;
      default: AccumulateTile<8>(s, off, coef, nnz, bias, relu, ext + t);
    }
  }

  // out = act(ext + residual) over the (ho x wo) outputs (ext's rows are wq apart).
  void AddResidual(const float* ext, const float* residual, float* out) const {
    const __m256 zero = _mm256_setzero_ps();
    for (int oy = 0; oy < ho_; ++oy) {
      const float* e = ext + oy * wq_;
      const float* r = residual + oy * wo_;
      float* o = out + oy * wo_;
      int ox = 0;
      for (; ox + 8 <= wo_; ox += 8) {
        const __m256 v = _mm256_add_ps(_mm256_loadu_ps(e + ox), _mm256_loadu_ps(r + ox));
        _mm256_storeu_ps(o + ox, p_.relu ? _mm256_max_ps(v, zero) : v);
      }
      for (; ox < wo_; ++ox) o[ox] = p_.relu ? std::max(e[ox] + r[ox], 0.f) : e[ox] + r[ox];
    }
  }

  // Max pooling of the (ho x wo) outputs in the extended plane (rows wq apart): the window's rows
  // first (vectorised, into ``rows``), then its columns.
  void MaxPool(const float* in, float* out, float* rows) const {
    for (int py = 0; py < yo_; ++py) {
      const int y0 = std::max(0, py * p_.pool_sh - p_.pool_ph);
      const int y1 = std::min(ho_, py * p_.pool_sh - p_.pool_ph + p_.pool_kh);
      std::copy_n(in + y0 * wq_, wo_, rows);
      for (int y = y0 + 1; y < y1; ++y) {
        const float* r = in + y * wq_;
        int x = 0;
        for (; x + 8 <= wo_; x += 8)
          _mm256_storeu_ps(rows + x, _mm256_max_ps(_mm256_loadu_ps(rows + x), _mm256_loadu_ps(r + x)));
        for (; x < wo_; ++x) rows[x] = std::max(rows[x], r[x]);
      }
      for (int px = 0; px < xo_; ++px) {
        const int x0 = std::max(0, px * p_.pool_sw - p_.pool_pw);
        const int x1 = std::min(wo_, px * p_.pool_sw - p_.pool_pw + p_.pool_kw);
        float best = rows[x0];
        for (int x = x0 + 1; x < x1; ++x) best = std::max(best, rows[x]);
        out[py * xo_ + px] = best;
      }
    }
  }

  Params p_;
  int m_ = -1, h_ = -1, w_ = -1, k_ = -1, hp_ = 0, wp_ = 0, ho_ = 0, wo_ = 0, hq_ = 0, wq_ = 0;
  int yo_ = 0, xo_ = 0;  // output size after the fused pooling
  int ext_ = 0, ext_alloc_ = 0;
  int64_t plane_ = 0, cols_ = 0;
  bool split_s_ = false;  // S computed on the unpadded input, then split (k < m)
  bool entries_ = false;  // only the needed_ values of S are computed
  int kc_ = 0;            // dictionary entries P refers to: rows_, gathered into dc_ per call
  std::vector<float> xp_, xt_, t_, s_, dc_, scratch_, all_ext_;
  std::vector<int> indptr_, indices_, offsets_, rows_, needed_;
};

// ------------------------------------------------------------------ factory
CustomStatefulOp* MakeLookupConv(const Params& p) { return CustomStatefulOp::create<LookupConv>(p); }
