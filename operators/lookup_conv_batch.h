// The paths of lcnn_lookup_conv that take several images of a batch at once (the plan says which:
// lookup_conv_plan.h): fully connected layers over the whole batch (plan.batched_few_outputs),
// small maps with their images interleaved (plan.interleave), and the dictionary product of a
// group of images in one pass (plan.batched_product). lookup_conv.cc calls them; the kernels they
// run are in lookup_conv_stages.h, lookup_conv_interleaved.h, lookup_conv_sparse_input.h and
// lookup_conv_kernels.h.
#ifndef LCNN_LOOKUP_CONV_BATCH_H_
#define LCNN_LOOKUP_CONV_BATCH_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "lookup_conv_attrs.h"
#include "lookup_conv_interleaved.h"
#include "lookup_conv_kernels.h"
#include "lookup_conv_plan.h"
#include "lookup_conv_prepared.h"
#include "lookup_conv_sparse_input.h"
#include "lookup_conv_stages.h"

// The tensors of one call (lookup_conv_format.h's inputs and output); residual is null without
// a shortcut.
struct Tensors {
  const float *x, *dictionary;
  const int* indptr;
  const float *coefs, *bias, *residual;
  float* y;
  bool product_is_output = false;  // Plan::identity_lookups, and this call's coefficients 1 and biases 0
};

// Whether n coefficients are all 1 and n biases all 0 (Plan::identity_lookups: a value of each,
// checked on every call, since the arrays may change without the packed content).
static inline bool UnitCoefficients(const float* coefs, const float* bias, int n) {
  for (int i = 0; i < n; ++i)
    if (coefs[i] != 1.f || bias[i] != 0.f) return false;
  return true;
}

// run(f0, f1, thread) over the channels [0, filters) of the lookup stage: all of them at one
// thread, else the plan's ranges (plan.channel_split), one a thread of the team.
template <class Run>
static inline void ChannelRanges(const Plan& plan, int filters, int threads, const Run& run) {
  if (threads == 1) return OnTeam(1, [&](int, int) { run(0, filters, 0); });  // (clocked as one region)
  const std::vector<int>& split = plan.channel_split;
  InterleavedFor(static_cast<int64_t>(split.size()) - 1, threads,
                 [&](int64_t range, int me) { run(split[range], split[range + 1], me); });
}

// Images [b0, b0 + interleave) interleaved (plan.interleave, lookup_conv_interleaved.h): their
// x side by side in each pixel, one product into the interleaved S, the lookups over all the
// images at once, then each image's outputs with the shortcut and act. Images past the batch:
// zero inputs, unused lanes.
template <class I>
static inline void InterleavedGroup(const Params& p, Prepared* prep, const Tensors& t, int64_t b0, int threads) {
  const Plan& plan = prep->plan;
  const Geometry& g = plan.geometry;
  const int64_t L = plan.interleave, n = std::min(L, plan.batch - b0), pixels = g.h * g.w;
  InterleaveImages<I>(t.x, g.m, pixels, b0, n, prep->group_x, threads);
  Product product{t.dictionary, &plan.rows, g.m, prep->group_x, pixels * L, pixels * L,
                  prep->group_s + (p.ph * g.wq + p.pw) * L, g.cols * L, g.w * L, g.wq * L};
  product.deep = true;  // (the plan interleaves only layers with dictionary rows)
  DictionaryProduct<I>(product, threads, prep->spaces[0].packed);
  InterleavedLookups<I>(plan, p.num_filter, t.indptr, t.coefs, t.bias, prep->group_s, prep->group_y, threads);
  DeinterleaveOutputs(p, plan, t.indptr, t.bias, prep->group_y, t.residual, b0, n, t.y, threads);
}

// S of images [b0, b1) in one product (plan.batched_product): x of the images side by side
// (row c holds channel c of each), S into each image's padded planes, one image's S after the
// other.
template <class I>
static inline void BatchedProduct(const Params& p, Prepared* prep, const Tensors& t, int64_t b0, int64_t b1,
                                  int threads) {
  const Plan& plan = prep->plan;
  const Geometry& g = plan.geometry;
  const int64_t n = b1 - b0, pixels = g.h * g.w;
  float* xs = prep->batch_input.data();
  StaticFor(g.m * n, threads, [&](int64_t u, int) {  // (channel c, image b) = (u / n, u % n)
    const int64_t c = u / n, b = u % n;
    std::memcpy(xs + (c * n + b) * pixels, t.x + ((b0 + b) * g.m + c) * pixels, pixels * sizeof(float));
  });
  Product product{t.dictionary, &plan.rows, g.m, xs, n * pixels, n * pixels,
                  prep->batch_s + p.ph * g.wq + p.pw, g.cols, g.w, g.wq};
  product.image_cols = pixels, product.image_pitch = plan.s_floats;
  product.deep = true;
  DictionaryProduct<I>(product, threads, prep->spaces[0].packed);
}

// A fully connected layer's input over the batch (plan.batched_few_outputs), as one (m x cols*N)
// matrix of columns image-innermost, into prep's batch_input (`xs`).
template <class I>
static inline void GatherBatchInput(const Params& p, Prepared* prep, const float* x, float* xs, int threads) {
  const Geometry& g = prep->plan.geometry;
  const int64_t n = prep->plan.batch;
  Workspace* ws = &prep->spaces[0];
  if (p.sh == 1 && p.sw == 1) {  // one phase: each input value to its padded position
    // each channel's images (rows m x pixels apart) transposed into its padded positions: the
    // whole plane at once where they are consecutive (no padding), else row by row
    const int64_t pixels = g.h * g.w;
    const bool whole = p.ph == 0 && p.pw == 0 && g.wq == g.w;
    StaticFor(g.m, threads, [&](int64_t c, int) {
      const float* src = x + c * pixels;
      float* dst = xs + (c * g.cols + p.ph * g.wq + p.pw) * n;
      if (whole) return TransposeFloats<I>(src, n, pixels, g.m * pixels, dst, n);
      for (int64_t yi = 0; yi < g.h; ++yi)
        TransposeFloats<I>(src + yi * g.w, n, g.w, g.m * pixels, dst + yi * g.wq * n, n);
    });
    return;
  }
  for (int64_t b = 0; b < n; ++b) {
    SplitPhases(p, g, x + b * g.m * g.h * g.w, g.m, ws->split, threads);
    StaticFor(g.m, threads, [&](int64_t c, int) {
      for (int64_t pos = 0; pos < g.cols; ++pos) xs[(c * g.cols + pos) * n + b] = ws->split[c * g.cols + pos];
    });
  }
}

// The lookups of a fully connected layer over the batch (one output a channel, S image-innermost
// in batch_s): each channel's outputs for all images gathered into batch_y (channel-major), block
// of S rows by block (plan.row_blocks, kGatherBlockBytes: each block stays in L2 while every
// channel of the thread's range reads it), then transposed into y (image-major), a register of
// each image's outputs at a time. Stored as gathered, each channel wrote one float into each
// image's row of the output, rows 16 KB apart (AlexNet's 4096 channels): lines in one set of L1,
// evicted before the next channel's store. AlexNet's fc7 alone at batch 16 (hybridized, medians of
// 200 calls, three processes each way, alternating), gathered first and stored 16 channels at a
// time by a scalar loop: one thread 0.566-0.588 -> 0.464-0.500 ms, two threads 0.362-0.375 ->
// 0.344-0.353.
template <class I>
static inline void OneOutputImages(const Params& p, Prepared* prep, const Tensors& t, int threads) {
  const Plan& plan = prep->plan;
  const int n = static_cast<int>(plan.batch), filters = p.num_filter, blocks = plan.row_blocks;
  const float* s = prep->batch_s;
  float* yt = prep->batch_y.data();
  ChannelRanges(plan, filters, threads, [&](int f0, int f1, int) {
    for (int blk = 0; blk < blocks; ++blk)
      for (int f = f0; f < f1; ++f) {
        // the channel's blocks with entries; a channel without any takes its bias in block 0
        const int first = std::min(plan.first_block[f], blocks - 1), last = std::max(plan.last_block[f], first);
        if (blk < first || blk > last) continue;
        const int* run = RunStarts(plan, f, blk);  // (one run a block: it ends where the next starts)
        GatherImages<I>(s, plan.entry_offsets.data() + run[0], t.coefs + run[0], run[1] - run[0], 0, n,
                        t.bias[f], blk > first, p.relu && blk == last, yt + int64_t{f} * n, 1);
      }
    TransposeFloats<I>(yt + int64_t{f0} * n, f1 - f0, n, n, t.y + f0, filters);
  });
}

// A fully connected layer over the batch: S = D x X in one product over all images (X as
// GatherBatchInput lays it out), or with the dictionary transposed S' = X D' (the images as
// the product's rows) then transposed; each output gathered for all images at once.
template <class I>
static inline void BatchedFewOutputs(const Params& p, Prepared* prep, const Tensors& t, int threads) {
  const Plan& plan = prep->plan;
  const Geometry& g = plan.geometry;
  const int64_t n = plan.batch;
  Workspace* ws = &prep->spaces[0];
  float* xs = prep->batch_input.data();
  float* s = prep->batch_s;
  if (p.transposed_dictionary) {
    // S' = X D' (batch x k): the images are the product's rows and D' (m x k) its x, read
    // once as D is otherwise; then S = S' transposed, image-innermost
    bool panel = false;
    if constexpr (I::kImagesPanelRows > 0) {  // (only sets that take it compile it)
      if (plan.images_panel) {
        ImagesPanelProduct<I>(t.x, static_cast<int>(n), g.m, prep->strip_dictionary, g.k, xs, threads);
        panel = true;
      }
    }
    if (!panel) {
      Product product{t.x, &prep->images, g.m, t.dictionary, g.k, g.k, xs, g.k};
      product.x_larger = true;
      DictionaryProduct<I>(product, threads, ws->packed);
    }
    StaticFor((g.k + I::kLanes - 1) / I::kLanes, threads, [&](int64_t block, int) {  // kLanes rows of S a unit
      const int64_t d0 = block * I::kLanes;
      TransposeFloats<I>(xs + d0, n, std::min<int64_t>(I::kLanes, g.k - d0), g.k, s + d0 * n, n);
    });
  } else {
    GatherBatchInput<I>(p, prep, t.x, xs, threads);
    const Product product{t.dictionary, &plan.rows, g.m, xs, g.cols * n, g.cols * n, s, g.cols * n};
    DictionaryProduct<I>(product, threads, ws->packed);
  }
  if (plan.one_output) return OneOutputImages<I>(p, prep, t, threads);
  const int64_t out_plane = g.yo * g.xo;
  ChannelRanges(plan, p.num_filter, threads, [&](int f0, int f1, int) {
    for (int f = f0; f < f1; ++f) {
      const int start = t.indptr[f], nnz = t.indptr[f + 1] - start;
      int64_t o = 0;  // the output's index in its plane
      ForEachOutput(g, [&](int64_t e) {
        GatherImages<I>(s, plan.entry_offsets.data() + start, t.coefs + start, nnz, static_cast<int>(e),
                        static_cast<int>(n), t.bias[f], false, p.relu, t.y + f * out_plane + o++,
                        p.num_filter * out_plane);
      });
    }
  });
}

#endif  // LCNN_LOOKUP_CONV_BATCH_H_
