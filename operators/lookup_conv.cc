// lcnn_lookup_conv: the sparse lookup convolution of LCNN, for inference, as an MXNet 1.9
// custom-operator library (lib_api). Its inputs, output and attributes are the contract of
// lookup_conv_format.h; attributes and sizes are checked in lookup_conv_attrs.h; every
// decision for an input shape and packed content is in the Plan (lookup_conv_plan.h), kept
// with the buffers it sizes (lookup_conv_prepared.h); the paths over several images at once are
// in lookup_conv_batch.h; the stages and vector kernels are in lookup_conv_stages.h,
// lookup_conv_interleaved.h, lookup_conv_kernels.h (the lookups), lookup_conv_gemm.h (the
// dictionary product), lookup_conv_sparse_input.h (fully connected layers at batch 1),
// lookup_conv_epilogue.h (shortcut, pooling) and lookup_conv_pooled.h (pooling in registers);
// the operator is registered in lookup_conv_register.cc. This file is the operator's state and
// its path for one image:
//
//   S = D x pad(X)   (the dictionary product, over stride-phase planes)
//   Y[f] = pool(act(bias[f] + sum over P[f]'s entries of coef * (S[d] shifted by (r, c))))
//
// Each output plane is accumulated in register tiles over all of its channel's entries: runs
// of the extended plane (flat tiles), or blocks of output rows stored straight into the output
// (row tiles; the plan says which). Work is spread over the threads MXNet gives the operator:
// whole images per thread in a batch, the channels and column chunks of one image otherwise;
// fully connected layers in a batch run one product over all images. Small maps in a batch
// run groups of images interleaved, one register of images per pixel (InterleavedGroup).
//
// This file is compiled once per instruction set of lookup_conv_isa.h: the Makefile passes
// -DLCNN_KERNEL_ISA=<set> with the set's -m flags, and everything below lives in a namespace
// of that set (lcnn_Avx2, lcnn_Avx512, ...) so the objects link side by side; the factory
// MakeLookupConv<set> is what library_init.cc chooses from.
#include <omp.h>

#include <algorithm>
#include <array>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core_caches.h"
#include "lookup_conv_attrs.h"
#include "lookup_conv_batch.h"
#include "lookup_conv_clocks.h"
#include "lookup_conv_epilogue.h"
#include "lookup_conv_isa.h"
#include "lookup_conv_kernels.h"
#include "lookup_conv_plan.h"
#include "lookup_conv_pool.h"
#include "lookup_conv_pooled.h"
#include "lookup_conv_prepared.h"
#include "lookup_conv_sparse_input.h"
#include "lookup_conv_stages.h"

#ifndef LCNN_KERNEL_ISA
#error "build with -DLCNN_KERNEL_ISA=Avx2, Avx512 or Avx2Pair (the Makefile does)"
#endif
#define LCNN_JOIN2(a, b) a##b
#define LCNN_JOIN(a, b) LCNN_JOIN2(a, b)

namespace LCNN_JOIN(lcnn_, LCNN_KERNEL_ISA) {

using I = LCNN_KERNEL_ISA;
// Prepared values outlive the states that built them (lookup_conv_pool.h).
using PreparedPool = StatePool<Prepared, I>;

// A copy of the dictionary in another layout (prep_'s), made again only when D is another array
// or MXNet's version of it changed since this state made it (not a compare: D is read as floats,
// and stale values can only be wrong values). A new plan makes its copies anew.
struct DictionaryCopy {
  std::pair<const void*, size_t> from{};
  bool valid = false;
  bool Current(const MXTensor& d) const { return valid && from == std::pair<const void*, size_t>(d.data_ptr, d.verID); }
  void Made(const MXTensor& d) {
    from = {d.data_ptr, d.verID};
    valid = true;
  }
};

class LookupConv : public LookupConvState {
 public:
  explicit LookupConv(const Params& p) : params_(p) {}
  ~LookupConv() override {
    if (prep_) PreparedPool::Get().Give(key_, std::move(prep_));
  }

  MXReturnValue Forward(std::vector<MXTensor>* inputs, std::vector<MXTensor>* outputs,
                        const OpResource& res) override {
    LCNN_SCOPE_CLOCK(call, "call of a layer");
    LCNN_SCOPE_CLOCK(prologue, "call of a layer: compare, plan, coefficients");
    const int threads = std::max(1, omp_get_max_threads());
    const PackedArrays packed = PackedArraysOf(*inputs);
    const bool same_content = prep_ && (same_content_next_ || (checked_ && packed == checked_arrays_));
    same_content_next_ = checked_ = false;
    if (Prepare(*inputs, threads, same_content) != MX_SUCCESS) return MX_FAIL;
    const CallScratch<I> scratch(prep_.get());  // S and the other scratch, shared with other layers' calls
    // (indptr from the plan's copy: what was checked when the plan was built is what is read)
    Tensors t{(*inputs)[kData].data<float>(), (*inputs)[kDictionary].data<float>(), prep_->indptr.data(),
              (*inputs)[kCoefs].data<float>(), (*inputs)[kBias].data<float>(),
              params_.residual ? (*inputs)[kResidual].data<float>() : nullptr, (*outputs)[0].data<float>()};
    if (!plan().entry_order.empty()) t.coefs = OrderedCoefs(t.coefs, threads, same_content);
    checked_arrays_ = packed;
    checked_ = true;
    if (plan().transposed_product) TransposedDictionary(inputs->at(kDictionary), threads);
    if (plan().images_panel) StripDictionaryOf(inputs->at(kDictionary), threads);
    t.product_is_output = plan().identity_lookups && UnitCoefficients(t.coefs, t.bias, params_.num_filter);
    LCNN_STOP_CLOCK(prologue);
    if (plan().batched_few_outputs) {
      BatchedFewOutputs<I>(params_, prep_.get(), t, threads);
      return MX_SUCCESS;
    }
    if (plan().interleave > 1) {
      for (int64_t b0 = 0; b0 < plan().batch; b0 += plan().interleave)
        InterleavedGroup<I>(params_, prep_.get(), t, b0, threads);
      return MX_SUCCESS;
    }
    const int64_t group = plan().batched_product ? plan().product_images : plan().batch;
    for (int64_t b0 = 0; b0 < plan().batch; b0 += group) {  // images [b0, b1): one product, or one each
      const int64_t b1 = std::min(plan().batch, b0 + group);
      if (plan().batched_product) BatchedProduct<I>(params_, prep_.get(), t, b0, b1, threads);
      if (plan().images_in_parallel) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int64_t b = b0; b < b1; ++b) Image(t, b, &prep_->spaces[omp_get_thread_num()], 1);
      } else {
        for (int64_t b = b0; b < b1; ++b) Image(t, b, &prep_->spaces[0], threads);
      }
    }
    return MX_SUCCESS;
  }

 private:
  // The plan for this input shape, thread count and packed content: rebuilt only on change (the
  // content not compared when it is the last call's, `same_content`).
  MXReturnValue Prepare(std::vector<MXTensor>& in, int threads, bool same_content) {
    const auto& xs = in[kData].shape;
    const int64_t batch = xs[0], k = in[kDictionary].shape[params_.transposed_dictionary ? 1 : 0];
    const int* ptr = in[kIndptr].data<int>();
    const int* idx = in[kIndices].data<int>();
    const size_t n1 = in[kIndptr].shape[0], nnz = in[kIndices].shape[0];
    if (!prep_) {  // this state's first call: a Prepared of an earlier state, if one fits
      key_ = PoolKey(xs, k, threads);
      prep_ = PreparedPool::Get().Take(key_);
      if (!prep_) prep_.reset(new Prepared());
    }
    if (Fits(*prep_, xs, k, threads, ptr, n1, idx, nnz, same_content)) return MX_SUCCESS;
    Geometry g;  // every size checked to fit the 32-bit offsets (lookup_conv_attrs.h)
    if (MakeGeometry(params_, xs[1], xs[2], xs[3], k, &g) != MX_SUCCESS) return MX_FAIL;
    prep_->indptr.clear();  // until the new plan is complete, no cached content matches
    transposed_.valid = strips_.valid = false;
    const TileRegisters regs{I::kLanes, I::kTileVectors, I::kRowTileVectors, I::kClassTileVectors,
                             I::kImagesPanelRows, I::kTransposedPixels};
    int64_t l1 = 0;
    if (CoreCacheBytes(kCoreL1, "lcnn_lookup_conv", &l1) != MX_SUCCESS) return MX_FAIL;
    if (BuildPlan(params_, g, batch, threads, regs, l1, ptr, n1, idx, nnz, 0, &prep_->plan) != MX_SUCCESS)
      return MX_FAIL;
    const RowAlignment a = AlignmentFor(params_, g, regs, plan());
    if (a.aligned) {  // again, on aligned rows
      if (MakeGeometry(params_, xs[1], xs[2], xs[3], k, &g, I::kLanes) != MX_SUCCESS ||
          BuildPlan(params_, g, batch, threads, regs, l1, ptr, n1, idx, nnz, a.classes, &prep_->plan) != MX_SUCCESS)
        return MX_FAIL;
    }
    prep_->indptr.assign(ptr, ptr + n1);
    prep_->indices.assign(idx, idx + nnz);
    AllocateBuffers<I>(params_, threads, prep_.get());
    NotePlanBuilt(a.aligned, plan().classes > 0, plan().row_blocks > 1, plan().pooled_rows,
                  plan().transposed_product, plan().identity_lookups, plan().split_depth,
                  plan().halved_class_tiles);
    return MX_SUCCESS;
  }

  // The state's attributes, input shape and threads: a Prepared of another key never fits
  // (Prepare still compares the packed content in full).
  std::string PoolKey(const std::vector<int64_t>& xs, int64_t k, int threads) const {
    const Params& p = params_;
    std::ostringstream key;
    for (int64_t v : {int64_t(p.kh), int64_t(p.kw), int64_t(p.sh), int64_t(p.sw), int64_t(p.ph), int64_t(p.pw),
                      int64_t(p.num_filter), int64_t(p.relu), int64_t(p.residual), int64_t(p.pool_kh),
                      int64_t(p.pool_kw), int64_t(p.pool_sh), int64_t(p.pool_sw), int64_t(p.pool_ph),
                      int64_t(p.pool_pw), int64_t(p.transposed_dictionary), xs[0], xs[1], xs[2], xs[3], k,
                      int64_t(threads)})
      key << v << ' ';
    return key.str();
  }

  const Plan& plan() const { return prep_->plan; }
  float* ChannelExt(Workspace* ws, int f) const { return ws->all_channels + f * prep_->channel_stride; }

  // One image b: the dictionary product (unless BatchedProduct made it), then every channel's
  // lookups (`threads` share them).
  void Image(const Tensors& t, int64_t b, Workspace* ws, int threads) {
    const Geometry& g = plan().geometry;
    const float* x = t.x + b * g.m * g.h * g.w;
    const int64_t rows = plan().rows.size();
    const float* s =
        plan().batched_product ? prep_->batch_s + b % plan().product_images * plan().s_floats : ws->s;
    const int64_t out_plane = g.yo * g.xo;
    float* y = t.y + b * params_.num_filter * out_plane;
    if (rows == 0 || plan().batched_product) {
      // no lookups at all (every channel is a constant), or S made for the whole batch
    } else if (plan().sparse_input) {  // fully connected: the rows of non-zero inputs
      SparseInputProduct<I>(t.dictionary, g.m, g.k, x, ws->input_rows.data(), ws->input_values.data(), ws->s, threads);
    } else if (plan().only_needed) {  // few outputs: only the S values read below
      SplitPhases(params_, g, x, g.m, ws->split, threads);
      NeededValues(t.dictionary, ws, threads);
    } else if (plan().transposed_product) {  // stride 1, a few columns a row: the product transposed
      TransposedProduct<I>(prep_->transposed_dictionary, rows, g.m, x, g.h, g.w,
                           ws->s + params_.ph * g.wq + params_.pw, g.cols, g.wq, threads);
    } else if (plan().product_into_s) {  // stride 1: the product stores into S's padded rows
      Product product{t.dictionary, &plan().rows, g.m, x, g.h * g.w, g.h * g.w,
                      ws->s + params_.ph * g.wq + params_.pw, g.cols, g.w, g.wq};
      if (plan().split_depth) product.depth_partials = ws->depth_partials.data();
      DictionaryProduct<I>(product, threads, ws->packed);
    } else if (plan().row_product) {  // a few input channels: product and split row by row
      ProductSplitRows<I>(params_, g, t.dictionary, plan().rows, x, ws->s, threads);
    } else if (plan().gathered_input) {  // a 1x1 layer at a stride: X's pixels at that stride, gathered
      // (S's rows are the output channels when the plan's P is the identity with unit values)
      Product product{t.dictionary, &plan().rows, g.m, x, g.ho * g.wq, g.h * g.w,
                      t.product_is_output ? y : ws->s, t.product_is_output ? out_plane : g.cols};
      product.x_columns = plan().x_columns.data();
      DictionaryProduct<I>(product, threads, ws->packed);
      if (t.product_is_output) return;
    } else if (plan().product_then_split && !plan().few_outputs) {  // split S, not X
      DictionaryProduct<I>({t.dictionary, &plan().rows, g.m, x, g.h * g.w, g.h * g.w, ws->product, g.h * g.w},
                           threads, ws->packed);
      SplitPhases(params_, g, ws->product, rows, ws->s, threads);
    } else {
      SplitPhases(params_, g, x, g.m, ws->split, threads);
      for (const auto& [first, phases] : plan().phase_runs) {  // the phases the kernel reaches
        const int64_t begin = first * g.plane, end = std::min(g.cols, (first + phases) * g.plane);
        const Product product{t.dictionary, &plan().rows, g.m, ws->split + begin, end - begin, g.cols,
                              ws->s + begin, g.cols};
        DictionaryProduct<I>(product, threads, ws->packed);
      }
    }
    const float* residual = t.residual ? t.residual + b * params_.num_filter * out_plane : nullptr;
    if (plan().pooled_rows) return PooledImage(s, t, y, ws, threads);
    if (plan().tile_major) {  // tile by tile over all channels, S's rows in L1-sized blocks
      const int64_t tiles = plan().tiles;
      const int blocks = plan().row_blocks, filters = params_.num_filter;
      // The channels in one group per thread, each (tile, group) a unit of work: small planes
      // have fewer tiles than threads (ResNet's 7x7 stage: one tile, so one busy thread).
      const int groups = threads;
      StaticFor(tiles * groups, threads, [&](int64_t unit, int) {  // tile by tile, its groups in turn
        const int64_t ti = unit / groups, grp = unit % groups;
        const Share channels = ShareOf(filters, static_cast<int>(grp), groups);
        const int f0 = static_cast<int>(channels.first), f1 = static_cast<int>(channels.last);
        for (int blk = 0; blk < blocks; ++blk)
          for (int f = f0; f < f1; ++f) {
            const int* runs = RunStarts(plan(), f, blk);
            if (runs[BlockRuns(plan())] == runs[0]) continue;  // none of f's entries in this block
            FlatTile(s, ti, f, runs, blk > plan().first_block[f], blk == plan().last_block[f],
                     residual != nullptr, t, ChannelExt(ws, f));
          }
      }, "TileMajorLookups");
    }
    if (plan().one_output) return OneOutputChannels(s, t, y, threads);
    ChannelRanges(plan(), params_.num_filter, threads, [&](int f0, int f1, int thread) {
      float* own = ws->channel.data() + thread * prep_->channel_scratch;
      if (plan().row_tiles) return RowTiles(s, f0, f1, t, residual, y, own);
      for (int f = f0; f < f1; ++f)
        Channel(s, f, t, plan().tile_major ? ChannelExt(ws, f) : own, own + prep_->ext_alloc,
                residual ? residual + f * out_plane : nullptr, y + f * out_plane);
    });
  }

  // The lookups of a layer whose pooling is taken in registers: the threads share the pooled rows.
  void PooledImage(const float* s, const Tensors& t, float* y, Workspace* ws, int threads) const {
    const Geometry& g = plan().geometry;
    const int64_t carry = params_.num_filter * PooledCarryFloats<I>(g);
    OnTeam(threads, [&](int i, int team) {
      const Share rows = ShareOf(g.yo, i, team);
      PooledRows<I>(params_, g, s, t.indptr, plan().entry_offsets.data(), t.coefs, t.bias, rows.first, rows.last,
                    ws->pooled_carry.data() + i * carry, y);
    });
  }

  // The S values in plan.needed only: S[i, pos] = D[rows[i]] . Xp[:, pos], over Xp transposed.
  void NeededValues(const float* d, Workspace* ws, int threads) {
    const Geometry& g = plan().geometry;
    const float* xt = ws->split;
    if (g.cols > 1) {
      for (int64_t c = 0; c < g.m; ++c)
        for (int64_t pos = 0; pos < g.cols; ++pos) ws->transposed[pos * g.m + c] = ws->split[c * g.cols + pos];
      xt = ws->transposed.data();
    }
    const int64_t count = plan().needed.size();
    StaticFor(count, threads, [&](int64_t i, int) {
      const int64_t o = plan().needed[i];
      ws->s[o] = Dot<I>(d + plan().rows[o / g.cols] * g.m, xt + (o % g.cols) * g.m, static_cast<int>(g.m));
    });
  }

  // Every channel's only output (a fully connected layer at batch 1: its entries gathered at
  // e = 0) in one loop, without Channel's work per channel. AlexNet-fast's fc6 (4096 channels
  // of 18 entries) alone in the operator, one thread, medians of 400 calls in three alternating
  // pairs: 336-393 -> 294-336 us; its gathers alone in C++ take about 60 us.
  void OneOutputChannels(const float* s, const Tensors& t, float* y, int threads) const {
    const int* off = plan().entry_offsets.data();
    StaticFor(params_.num_filter, threads, [&](int64_t f, int) {
      const int start = t.indptr[f];
      const float v = GatherDot<I>(s, off + start, t.coefs + start, t.indptr[f + 1] - start, 0) + t.bias[f];
      y[f] = params_.relu ? std::max(v, 0.f) : v;
    });
  }

  // One output channel (of a plan with row tiles, only one without entries: RowTiles takes the
  // others): accumulate its entries in flat tiles into the extended plane `ext`, then, from
  // `ext`, add the shortcut, apply act and keep wo columns (into `out`, max-pooled through
  // `pool_scratch` if pooling).
  void Channel(const float* s, int f, const Tensors& t, float* ext, float* pool_scratch, const float* residual,
               float* out) const {
    const Geometry& g = plan().geometry;
    const int start = t.indptr[f], nnz = t.indptr[f + 1] - start;
    const float bias = t.bias[f];
    if (nnz == 0 && !residual) {  // no lookups: the channel is pool(act(bias)), a constant
      std::fill(out, out + g.yo * g.xo, params_.relu ? std::max(bias, 0.f) : bias);
      return;
    }
    if (nnz == 0) {  // act(bias + residual)
      std::fill(ext, ext + g.ext, bias);
      return AddResidual<I>(params_, g, ext, residual, out);
    }
    const bool relu = params_.relu && !residual;
    const int* off = plan().entry_offsets.data() + start;
    if (plan().few_outputs) {  // a few outputs (fully connected layers): gather over entries
      const auto output = [&](int64_t e) {
        const float v = GatherDot<I>(s, off, t.coefs + start, nnz, static_cast<int>(e)) + bias;
        return relu ? std::max(v, 0.f) : v;
      };
      if (!residual && !params_.pool_kh) {  // straight into the output: no extended rows to copy
        int64_t o = 0;
        ForEachOutput(g, [&](int64_t e) { out[o++] = output(e); });
        return;
      }
      ForEachOutput(g, [&](int64_t e) { ext[e] = output(e); });
    } else if (!plan().tile_major) {  // bias and act applied as each tile is stored
      const int all[2] = {start, start + nnz};
      for (int64_t ti = 0; ti < plan().tiles; ++ti) FlatTile(s, ti, f, all, false, true, residual != nullptr, t, ext);
    }
    if (residual) {
      AddResidual<I>(params_, g, ext, residual, out);
    } else if (params_.pool_kh) {
      MaxPool<I>(params_, g, ext, out, pool_scratch);
    } else {  // the extended rows (wq wide) hold the wo columns kept
      for (int64_t oy = 0; oy < g.ho; ++oy) CopyFloats(ext + oy * g.wq, g.wo, out + oy * g.wo);
    }
  }

  // Channels [f0, f1) of a plan with row tiles, tile by tile: a tile's rows of S stay in L1
  // while each channel reads them, where channel by channel they came from L2 again for every
  // channel (ResNet-18-fast's 56- and 28-wide layers: 16 and 32 S rows, 4 and 8 output rows a
  // tile). Bias, shortcut and act are applied as each tile is stored. ResNet-18-fast 0.03 in
  // lcnn-predict, one thread, alternating processes, medians: batch 1 1.674 -> 1.631 ms (40
  // rounds), batch 16 27.0 -> 26.4 ms.
  void RowTiles(const float* s, int f0, int f1, const Tensors& t, const float* residual, float* y,
                float* own) const {
    const int64_t out_plane = plan().geometry.yo * plan().geometry.xo;
    const auto entries = [&](int f) { return t.indptr[f + 1] > t.indptr[f]; };
    for (int f = f0; f < f1; ++f)  // channels without entries: a constant, or act(bias + shortcut)
      if (!entries(f))
        Channel(s, f, t, own, own + prep_->ext_alloc, residual ? residual + f * out_plane : nullptr,
                y + f * out_plane);
    for (int64_t ti = 0; ti < plan().tiles; ++ti)
      for (int f = f0; f < f1; ++f)
        if (entries(f)) RowTileOf(s, ti, f, t, residual ? residual + f * out_plane : nullptr, y + f * out_plane);
  }

  // Flat tile ti of channel f over its entries [runs[0], runs[BlockRuns]) (one run a class with
  // class tiles), into the extended plane `ext`. The channel's first entries (not `partial`)
  // start from the bias, others add to what ext holds; after its `last` entries act is applied,
  // unless Channel adds a shortcut first.
  void FlatTile(const float* s_all, int64_t ti, int f, const int* runs, bool partial, bool last, bool shortcut,
                const Tensors& t, float* ext) const {
    const int64_t e = ti * plan().tile_span;
    const int begin = runs[0], end = runs[BlockRuns(plan())];
    const bool act = last && params_.relu && !shortcut;
    if constexpr (I::kClassTileVectors > 0) {  // (the plan has no classes otherwise)
      if (plan().classes)
        return AccumulateClassTileOf<I>(plan().classes, plan().tile_vectors, s_all + e, plan().entry_offsets.data(),
                                        t.coefs, runs, t.bias[f], partial, act, ext + e);
    }
    AccumulatePartialTile<I>(s_all + e, plan().entry_offsets.data() + begin, t.coefs + begin, end - begin, t.bias[f],
                             partial, act, ext + e, plan().geometry.ext - e);
  }

  // The call's coefficients in the plan's entry order, in prep's buffer: gathered again only when
  // they are not those of the last gather, which a compare in the packed order tells. The gather
  // reads them scattered, from memory in a network (ResNet-18-accurate 0.05 at batch 1: 1.25
  // million entries, 9% of a call); the compare reads them in order, as Fits reads the indices.
  // Shared by the threads from the size at which they share a compare.
  const float* OrderedCoefs(const float* coefs, int threads, bool same_content) {
    const int64_t n = plan().entry_order.size();
    const int* order = plan().entry_order.data();
    float* out = prep_->coefs.data();
    std::vector<float>& source = prep_->coefs_source;
    if (static_cast<int64_t>(source.size()) == n && (same_content || SameFloats(source.data(), coefs, n, threads)))
      return out;
#pragma omp parallel for num_threads(threads) if (n >= static_cast<int64_t>(kParallelCompareInts))
    for (int64_t i = 0; i < n; ++i) out[i] = coefs[order[i]];
    source.assign(coefs, coefs + n);
    return out;
  }

  // D's listed rows transposed into prep's blocks (TransposedProduct's operand), made again only
  // when the dictionary changed (DictionaryCopy).
  void TransposedDictionary(const MXTensor& d, int threads) {
    if (transposed_.Current(d)) return;
    TransposeDictionary<I>(static_cast<const float*>(d.data_ptr), plan().rows, plan().geometry.m,
                           prep_->transposed_dictionary, threads);
    transposed_.Made(d);
  }

  // D' strip by strip into prep's copy (ImagesPanelProduct's operand), made again only when the
  // dictionary changed (DictionaryCopy).
  void StripDictionaryOf(const MXTensor& d, int threads) {
    if (strips_.Current(d)) return;
    StripDictionary<I>(static_cast<const float*>(d.data_ptr), plan().geometry.m, plan().geometry.k,
                       prep_->strip_dictionary, threads);
    strips_.Made(d);
  }

  // Row tile ti of channel f over all its entries, stored into its output plane `out` with the
  // shortcut (`residual`, or none) added before act.
  void RowTileOf(const float* s_all, int64_t ti, int f, const Tensors& t, const float* residual, float* out) const {
    const Geometry& g = plan().geometry;
    const RowTile rt = RowTileAt(plan(), ti);
    const int start = t.indptr[f];
    AccumulateRowTile<I>(rt.rows, (rt.width + I::kLanes - 1) / I::kLanes, s_all + rt.oy * g.wq + rt.ox, g.wq,
                         plan().entry_offsets.data() + start, t.coefs + start, t.indptr[f + 1] - start, t.bias[f],
                         false, residual ? residual + rt.oy * g.wo + rt.ox : nullptr, g.wo, params_.relu, rt.width,
                         out + rt.oy * g.wo + rt.ox, g.wo);
  }

  // The packed arrays (indptr, indices, coefs) of a call: where each is and MXNet's version of
  // it, which MXNet's engine advances on every write to the array.
  using PackedArrays = std::array<std::pair<const void*, size_t>, 3>;
  static PackedArrays PackedArraysOf(const std::vector<MXTensor>& in) {
    return {{{in[kIndptr].data_ptr, in[kIndptr].verID},
             {in[kIndices].data_ptr, in[kIndices].verID},
             {in[kCoefs].data_ptr, in[kCoefs].verID}}};
  }

  Params params_;
  std::string key_;                  // what prep_ was built for, as PreparedPool keys it
  std::unique_ptr<Prepared> prep_;
  // The packed arrays of this state's last call, which compared their content with prep_'s (or
  // built prep_ from it): the same arrays at the same versions are not compared again. Why:
  // the compares read the whole packed content and prep_'s copy every call, from memory in a
  // network (ResNet-18-accurate 0.05, one thread, batch 1: 1.0 ms of a 16.2 ms call). Only this
  // state's own calls count: a Prepared taken from the pool, made by another state (another
  // network's arrays may since sit at the same place, at the same version), is compared in full.
  PackedArrays checked_arrays_{};
  bool checked_ = false;
  // The dictionary (array, version) prep_'s transposed blocks and strips were made from by this state.
  DictionaryCopy transposed_, strips_;
};

}  // namespace lcnn_<set>

// ------------------------------------------------------------------ factory
template <>
LookupConvState* MakeLookupConv<LCNN_KERNEL_ISA>(const Params& p) {
  return static_cast<LookupConvState*>(CustomStatefulOp::create<LCNN_JOIN(lcnn_, LCNN_KERNEL_ISA)::LookupConv>(p));
}
