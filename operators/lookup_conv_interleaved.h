// The stages of lcnn_lookup_conv on a group of interleaved images (plan.interleave > 1; the
// rule and its measurements are in lookup_conv_thresholds.h): the images' inputs side by side in
// each pixel, the lookups over all of them at once, and each image's outputs taken back out.
// lookup_conv.cc runs the product between the first two. In the interleaved layouts a pixel
// (of x, S or the outputs) holds the value of every image of the group: `lanes` floats, one
// register of the kernel set.
#ifndef LCNN_LOOKUP_CONV_INTERLEAVED_H_
#define LCNN_LOOKUP_CONV_INTERLEAVED_H_

#include <algorithm>
#include <cstdint>

#include "lookup_conv_attrs.h"
#include "lookup_conv_kernels.h"
#include "lookup_conv_plan.h"
#include "lookup_conv_stages.h"

// out (m x pixels x lanes) = images [b0, b0 + n) of x (batch x m x pixels), lane b holding image
// b0 + b; lanes from n on are zero (lanes: I's). Blocks of lanes pixels of every image, transposed
// in registers, where a scalar loop stored a float at a time: ResNet-18-fast 0.03's 7x7 layers at
// batch 16 (1.6 MB each way), one thread, 100-130 -> 73-102 us a layer.
template <class I>
static inline void InterleaveImages(const float* x, int64_t m, int64_t pixels, int64_t b0, int64_t n, float* out,
                                    int threads) {
  constexpr int L = I::kLanes;
  StaticFor(m, threads, [&](int64_t c, int) {
    TransposeFloats<I>(x + (b0 * m + c) * pixels, n, pixels, m * pixels, out + c * pixels * L, L, L);
  });
}

// y (filters x ho x wo x lanes) = bias + every channel's lookups in the interleaved S (rows x cols
// x lanes), one register per output pixel: row tiles of the plan (in pixels) with the channels
// in one group per thread, tile by tile over all channels in the plan's row blocks when
// tile-major (partial sums kept in y between blocks). A channel without entries is not written.
template <class I>
static inline void InterleavedLookups(const Plan& plan, int filters, const int* indptr, const float* coefs,
                                      const float* bias, const float* s, float* y, int threads) {
  const Geometry& g = plan.geometry;
  const int64_t L = plan.interleave, out_plane = g.ho * g.wo;
  const int blocks = plan.tile_major ? plan.row_blocks : 1, groups = threads;
  InterleavedFor(plan.tiles * groups, threads, [&](int64_t unit, int) {  // tile by tile, its groups in turn
    const int64_t ti = unit / groups, grp = unit % groups;
    const RowTile rt = RowTileAt(plan, ti);
    const Share channels = ShareOf(filters, static_cast<int>(grp), groups);
    const int f0 = static_cast<int>(channels.first), f1 = static_cast<int>(channels.last);
    for (int blk = 0; blk < blocks; ++blk) {
      for (int f = f0; f < f1; ++f) {
        const int* starts = plan.tile_major ? RunStarts(plan, f, blk) : nullptr;  // (no classes here)
        const int begin = plan.tile_major ? starts[0] : indptr[f];
        const int end = plan.tile_major ? starts[1] : indptr[f + 1];
        if (begin == end) continue;
        AccumulateRowTile<I>(rt.rows, rt.width, s + (rt.oy * g.wq + rt.ox) * L, g.wq * L,
                             plan.entry_offsets.data() + begin, coefs + begin, end - begin, bias[f],
                             plan.tile_major && blk > plan.first_block[f], nullptr, 0, false,
                             static_cast<int>(rt.width * L), y + (f * out_plane + rt.oy * g.wo + rt.ox) * L, g.wo * L);
      }
    }
  });
}

// Images [b0, b0 + n) of out (batch x filters x ho x wo) = act(the interleaved y [+ residual]),
// where a channel without entries is its bias. A scalar loop: register transposes, as
// InterleaveImages takes its inputs in, were no faster here (with the shortcut this moves 4.8 MB
// for ResNet-18's 7x7 layers at batch 16, at about 35 GB/s).
static inline void DeinterleaveOutputs(const Params& p, const Plan& plan, const int* indptr, const float* bias,
                                       const float* y, const float* residual, int64_t b0, int64_t n, float* out,
                                       int threads) {
  const Geometry& g = plan.geometry;
  const int64_t L = plan.interleave, out_plane = g.ho * g.wo;
  const int filters = p.num_filter;
  StaticFor(filters, threads, [&](int64_t f, int) {
    const bool lookups = indptr[f + 1] > indptr[f];
    const float* in = y + f * out_plane * L;
    for (int64_t b = 0; b < n; ++b) {
      const int64_t plane = ((b0 + b) * filters + f) * out_plane;
      const float* res = residual ? residual + plane : nullptr;
      for (int64_t q = 0; q < out_plane; ++q) {
        const float v = (lookups ? in[q * L + b] : bias[f]) + (res ? res[q] : 0.f);
        out[plane + q] = p.relu ? std::max(v, 0.f) : v;
      }
    }
  });
}

#endif  // LCNN_LOOKUP_CONV_INTERLEAVED_H_
