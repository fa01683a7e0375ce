// The stages of lcnn_lookup_conv on one image (lookup_conv.cc runs them as its plan says):
// splitting into stride phases, the dictionary product, max-pooling and the shortcut, and the
// prefetch of tile-major lookups' entries. Each takes the number of threads it may use (1 when
// whole images run in parallel). The vector stages take the instruction set I
// (lookup_conv_isa.h) they are compiled for.
#ifndef LCNN_LOOKUP_CONV_STAGES_H_
#define LCNN_LOOKUP_CONV_STAGES_H_

#include <algorithm>
#include <cstring>
#include <vector>

#include "lookup_conv_attrs.h"
#include "lookup_conv_gemm.h"
#include "lookup_conv_kernels.h"
#include "lookup_conv_plan.h"
#include "lookup_conv_team.h"

// The dictionary product in the way of BLIS: x is cut into strips of two registers' width,
// copied ("packed") so that each strip's rows are contiguous, and every panel of the set's
// kPanelRows rows of D passes over a strip with its 2 x kPanelRows accumulators in registers
// (GemmStrip).
// Rows of x per pass (the product is summed over passes): as many as make a packed strip of
// 16 KB (256 rows on AVX2, 128 on AVX-512), which stays in L1 while the panels of D pass over it.
static const int64_t kGemmStripBytes = 16 << 10;
// Strips per chunk: at most 128 KB of packed x, which stays in L2 (512 KB on Zen 3,
// 1 MB on Zen 5) while every panel of D passes over the chunk.
static const int64_t kGemmChunkBytes = 128 << 10;
// A product over a whole batch ("deep", plan.batched_product) writes an S far larger than L2,
// and every pass over x's rows reads and writes all of it again: its strips hold 64 KB of x
// (512 rows on AVX-512, 1024 on AVX2), kept in L2, not L1, in chunks of 256 KB.
// ResNet-18-accurate's 7x7 layer at batch 16 (S of 6 MB) alone, medians of alternating runs:
// one image a product 13.8-14.6 ms; over the batch in passes of 128 rows 14.4-17.7; in one pass
// of 512 rows 12.5-16.6 (chunks of 512 KB; four of six runs 12.5-13.4). Chunks of 256 KB
// measured the same as 512 KB (12.1-12.8 against 12.3-12.4 ms) and fit Zen 3's 512 KB L2.
static const int64_t kDeepStripBytes = 64 << 10, kDeepChunkBytes = 256 << 10;
template <class I>
constexpr int GemmDepth(bool deep) {
  return static_cast<int>((deep ? kDeepStripBytes : kGemmStripBytes) / (StripFloats<I>() * sizeof(float)));
}
// A product of one strip of columns (a fully connected layer over a batch of at most a strip's
// images) takes all m rows of x in one pass, up to this many rows (a packed strip of 512 KB on
// AVX-512, half of a Zen 5 core's L2): each panel then reads its rows of D from start to end
// once and stores its outputs once. In passes of GemmDepth rows it read each row of D in
// 512-byte pieces and loaded and stored its outputs once a pass. AlexNet's 4096 -> 1000
// classifier at batch 16 alone (D of 16 MB; medians of 100 calls, two rounds): one thread
// 1.58-1.92 -> 1.35-1.37 ms, two threads 0.78-1.32 -> 0.69-0.78 ms.
static const int64_t kOneStripMaxRows = 4096;
// So does a product whose x, all m rows of its strips, fits one chunk (ResNet-18's 7x7 layers at
// batch 1: 512 rows of 49 columns, 128 KB in two strips on AVX-512, four on AVX2), for the same
// reasons. D of 1024 x 512 (ResNet-18-accurate) alone, Zen 4, medians of 100 products: one
// thread 676-685 -> 594-595 us (with x, D and S evicted first 789-864 -> 719-754), two threads
// 346-397 -> 302 us; D of 128 x 512 (ResNet-18-fast) 88 -> 78-80 us; AVX2 kernels 670-854 -> 611-634.
template <class I>
static inline int64_t ProductDepth(int64_t m, int64_t cols, bool deep) {
  const int64_t W = StripFloats<I>(), x_bytes = m * ((cols + W - 1) / W * W) * static_cast<int64_t>(sizeof(float));
  const bool one_pass = (cols <= W && m <= kOneStripMaxRows) || x_bytes <= (deep ? kDeepChunkBytes : kGemmChunkBytes);
  return one_pass ? m : std::min<int64_t>(m, GemmDepth<I>(deep));
}

// Strips are packed when at least this many panels pass over each: packing costs about one
// pass over x. Unpacked strips are read in place, walking down x by whole rows (lines split,
// pages crossed); measured on ResNet-18's and AlexNet's shapes (Zen 3), packing gained 10-25%
// from about 20 panels on and lost 10-30% at 3-6. At 11 panels (AVX-512's 12-row panels over
// ResNet-18-accurate's k = 128) it loses: Zen 5 3-8%; Intel AVX-512 host, lcnn-predict with a
// clock around each stage, its four 56x56 products 617-657 -> 494-506 µs a call at one thread,
// batch 1 (two threads 277-307 -> 238-242; batch 16 497-508 -> 405-411 an image). The AVX2
// kernels (6-row panels) on the same host, alone: k = 64 (11 panels) 4-12% faster in place.
static const int kPackMinPanels = 12;

// Floats of the scratch row SplitInputRow needs (stride 4: the padded row, for a vector
// deinterleave).
static inline int64_t SplitRowFloats(const Params& p, const Geometry& g) { return g.wq * p.sw + 32; }

// Input row yi of one plane (src: w floats) into that plane's stride phases at `plane_phases`
// (its first phase's first row). Only the input's own positions are written: the padding stays
// zero from the buffer's allocation. `padded`: SplitRowFloats of scratch, zero outside
// [pw, pw + w); src may already be padded + pw (then it is not copied).
static inline void SplitInputRow(const Params& p, const Geometry& g, const float* src, int64_t yi,
                                 float* plane_phases, float* padded) {
  const int64_t py = (yi + p.ph) % p.sh, yq = (yi + p.ph) / p.sh;
  float* dst = plane_phases + py * p.sw * g.plane + yq * g.wq;
  if (p.sw == 1) {
    std::memcpy(dst + p.pw, src, g.w * sizeof(float));
  } else if (p.sw == 2) {
    SplitRowPadded2(src, g.w, p.pw, dst, g.plane);
  } else if (p.sw == 4) {  // an AVX2 deinterleave of the padded row
    if (src != padded + p.pw) std::memcpy(padded + p.pw, src, g.w * sizeof(float));
    SplitRow(padded, p.sw, g.wq, dst, g.plane);
  } else {
    for (int px = 0; px < p.sw; ++px) {  // columns xi = xq * sw + px - pw
      float* row = dst + px * g.plane;
      const int64_t xi0 = ((px - p.pw) % p.sw + p.sw) % p.sw;
      for (int64_t xi = xi0, xq = (xi0 + p.pw) / p.sw; xi < g.w; xi += p.sw, ++xq) row[xq] = src[xi];
    }
  }
}

// Whether input row yi lands in a row of stride phases the kernel reaches.
static inline bool RowReached(const Params& p, int64_t yi) { return (yi + p.ph) % p.sh < ReachedPhases(p.kh, p.sh); }

// pad(X) split into stride phases: out[c][py][px][y][x] = X[c][y*sh + py - ph][x*sw + px - pw],
// for `channels` planes of h x w. Rows of phases the kernel does not reach are skipped.
static inline void SplitPhases(const Params& p, const Geometry& g, const float* x, int64_t channels, float* out,
                               int threads) {
  OnTeam(threads, [&](int t, int team) {
    std::vector<float> padded(p.sw == 4 ? SplitRowFloats(p, g) : 0, 0.f);  // one per thread, read at stride 4 only
    const Share share = ShareOf(channels, t, team);
    for (int64_t c = share.first; c < share.last; ++c)
      for (int64_t yi = 0; yi < g.h; ++yi)
        if (RowReached(p, yi)) SplitInputRow(p, g, x + (c * g.h + yi) * g.w, yi, out + c * g.cols, padded.data());
  });
}

// Input rows ahead that ProductSplitRows fetches: the input comes from memory (a network's
// input), and its rows, a few streams of a few hundred bytes each, were read at about 6 GB/s.
static const int64_t kRowProductPrefetchRows = 4;
// S = D x pad(X) split into stride phases one input row at a time (plan.row_product, inputs of
// a few channels): each row's products over the listed dictionary rows, m multiply-adds a value
// from the input's m rows in L1, go straight into S's phases. X is read once and S written once,
// where a product before or after the split wrote and read an image-sized buffer in between.
template <class I>
static inline void ProductSplitRows(const Params& p, const Geometry& g, const float* d, const std::vector<int>& rows,
                                    const float* x, float* s, int threads) {
  const int64_t k = rows.size(), L = I::kLanes;
  OnTeam(threads, [&](int t, int team) {
    std::vector<float> padded(SplitRowFloats(p, g), 0.f);
    float* product = padded.data() + p.pw;  // the row's products, where SplitInputRow reads them
    const Share share = ShareOf(g.h, t, team);
    for (int64_t yi = share.first; yi < share.last; ++yi) {
      if (!RowReached(p, yi)) continue;
      if (yi + kRowProductPrefetchRows < g.h) {
        for (int64_t c = 0; c < g.m; ++c) {
          const char* ahead = reinterpret_cast<const char*>(x + (c * g.h + yi + kRowProductPrefetchRows) * g.w);
          for (int64_t b = 0; b < g.w * static_cast<int64_t>(sizeof(float)); b += 64) _mm_prefetch(ahead + b, _MM_HINT_T0);
        }
      }
      for (int64_t i = 0; i < k; ++i) {
        const float* di = d + static_cast<int64_t>(rows[i]) * g.m;
        int64_t j = 0;
        for (; j + L <= g.w; j += L) {  // whole registers (masked stores are microcoded on AMD's AVX2)
          typename I::Vec acc = I::Zero();
          for (int64_t c = 0; c < g.m; ++c) acc = I::Fma(I::Broadcast(di + c), I::Load(x + (c * g.h + yi) * g.w + j), acc);
          I::Store(product + j, acc);
        }
        if (j < g.w) {  // the last columns
          const typename I::Mask lanes = I::FirstLanes(static_cast<int>(g.w - j));
          typename I::Vec acc = I::Zero();
          for (int64_t c = 0; c < g.m; ++c)
            acc = I::Fma(I::Broadcast(di + c), I::LoadFirst(x + (c * g.h + yi) * g.w + j, lanes), acc);
          I::StoreFirst(product + j, lanes, acc);
        }
        SplitInputRow(p, g, product, yi, s + i * g.cols, padded.data());
      }
    }
  });
}

// packed (depth x W per strip, strips after one another) = rows [c0, c0 + depth) of x (rows ldx
// apart) for strips [s0, s1) of W floats (the product's two registers, or one: whole registers);
// the last strip's columns past `cols` are zero. Register by register, not memcpy and fill: a
// call of each for 128 bytes was 2.5% of ResNet-18-accurate 0.01 at two threads, batch 1; one
// thread, 8 alternating rounds, medians 7.88 -> 7.76 ms. With x_columns, column j of x is the
// row's float x_columns[j], or 0 where that is negative (Product::x_columns), gathered.
template <class I>
static inline void PackStrips(const float* x, int64_t ldx, int64_t cols, int64_t c0, int depth, int64_t s0, int64_t s1,
                              float* packed, int64_t W = StripFloats<I>(), const int* x_columns = nullptr) {
  for (int c = 0; c < depth; ++c) {  // row by row: x is read in order (the prefetchers follow)
    const float* src = x + (c0 + c) * ldx;
    for (int64_t s = s0; s < s1; ++s) {
      float* dst = packed + ((s - s0) * depth + c) * W;
      for (int64_t v = 0, j = s * W; v < W; v += I::kLanes, j += I::kLanes) {
        const int64_t n = cols - j;  // of this register's lanes, columns of x
        if (x_columns && n < I::kLanes) {  // (a table has no entries past cols to gather by)
          for (int64_t l = 0; l < I::kLanes; ++l)
            dst[v + l] = l < n && x_columns[j + l] >= 0 ? src[x_columns[j + l]] : 0.f;
          continue;
        }
        I::Store(dst + v, x_columns        ? I::GatherOrZero(src, x_columns + j)
                          : n >= I::kLanes ? I::Load(src + j)
                          : n > 0          ? I::LoadFirst(src + j, I::FirstLanes(static_cast<int>(n)))
                                           : I::Zero());
      }
    }
  }
}

// Floats of the scratch DictionaryProduct needs per thread for m rows of x: a chunk of strips,
// or one strip of all m rows (ProductDepth).
template <class I>
static inline int64_t PackedFloats(int64_t m, bool deep) {
  const int64_t depth = std::min<int64_t>(m, GemmDepth<I>(deep)), W = StripFloats<I>();
  const int64_t chunk_bytes = deep ? kDeepChunkBytes : kGemmChunkBytes;
  const int64_t chunk = std::max<int64_t>(1, chunk_bytes / static_cast<int64_t>(depth * W * sizeof(float))) * depth * W;
  return std::max(chunk, ProductDepth<I>(m, 1, deep) * W);
}

// One product: out = the dictionary rows of D (k x m) listed in `rows` x x (m x cols); rows of x
// are ldx floats apart, rows of out ldo. Column j of x goes to column j of out, or, when
// row_width is set (x holds an image of rows row_width wide, out a padded plane of rows
// row_pitch apart), to column (j / row_width) * row_pitch + j % row_width. When image_cols is
// set too (x holds images of image_cols columns side by side, a multiple of row_width; out
// their planes image_pitch apart), that mapping applies within each image.
struct Product {
  const float* d;
  const std::vector<int>* rows;
  int64_t m;
  const float* x;
  int64_t cols, ldx;
  float* out;
  int64_t ldo;
  int64_t row_width = 0, row_pitch = 0;
  int64_t image_cols = 0, image_pitch = 0;
  bool deep = false;  // strips kDeepStripBytes deep (a product over a batch)
  // x is the larger operand (a fully connected layer's transposed dictionary, its images as the
  // rows): the threads split x's columns, never the panels, so that each reads half of x. AlexNet's
  // classifier alone at batch 16, two threads, medians of 40 calls in one process against its
  // dictionary untransposed: panels split (12 and 4 images) 0.54-1.50 ms against 0.52-0.57;
  // columns split 0.56-0.65 against 0.55-0.59.
  bool x_larger = false;
  // Column j of x is not x's column j but the float x_columns[j] of each row of x, or 0 where
  // that is negative (cols of them): a 1x1 layer at a stride reads X's pixels at that stride
  // (Plan::gathered_input). Its strips are always packed, gathered from x as they are.
  const int* x_columns = nullptr;
  // Plan::split_depth: room for threads - 1 partial outputs (rows x ldo floats each), so that the
  // threads split the depth where all columns fit one chunk (null: never)
  float* depth_partials = nullptr;
};

// out's column for the product's column j
static inline int64_t OutColumn(const Product& pr, int64_t j) {
  int64_t image = 0;
  if (pr.image_cols) image = j / pr.image_cols * pr.image_pitch, j %= pr.image_cols;
  return image + (pr.row_width ? j / pr.row_width * pr.row_pitch + j % pr.row_width : j);
}

// Whether columns [j0, j0 + width) lie in one row of out (always, without row_width; images
// end at the end of a row).
static inline bool OneOutSegment(const Product& pr, int64_t j0, int64_t width) {
  return !pr.row_width || j0 % pr.row_width + width <= pr.row_width;
}

// Copies `count` rows of columns [j0, j0 + width) between out (rows from `out`, ldo apart) and
// a strip (rows `ld` apart, from column 0): into out when `to_out`, else out of it, in one
// segment per row of out crossed (only strips that cross rows come here: row_width is set).
static inline void MoveColumns(const Product& pr, int count, int64_t j0, int64_t width, float* out, float* strip,
                               int64_t ld, bool to_out) {
  for (int64_t j = j0; j < j0 + width;) {
    const int64_t end = std::min(j0 + width, (j / pr.row_width + 1) * pr.row_width);
    float* o = out + OutColumn(pr, j);
    for (int r = 0; r < count; ++r) {
      float* dst = to_out ? o + r * pr.ldo : strip + r * ld + (j - j0);
      const float* src = to_out ? strip + r * ld + (j - j0) : o + r * pr.ldo;
      CopyFloats(src, end - j, dst);
    }
    j = end;
  }
}

// GemmStrip for a panel of `count` rows (1 .. kPanelRows) over V registers of a strip: the
// number of rows picked at compile time, from R = kPanelRows down; strided when lda is set;
// skewed when its rows, m floats apart in D, share L1 sets (SharesL1Sets).
template <class I, int V, int R = I::kPanelRows>
static inline void StripOfPanel(int count, const float* const* a, int64_t lda, int64_t m, int depth, const float* b,
                                int64_t ldb, StripAhead ahead, bool acc, int64_t width, float* o, int64_t ldo) {
  if constexpr (R > 1) {
    if (count < R) return StripOfPanel<I, V, R - 1>(count, a, lda, m, depth, b, ldb, ahead, acc, width, o, ldo);
  }
  if constexpr (OutnumbersL1Ways<R>()) {
    if (SharesL1Sets<R>(m) && depth >= kSkewFloats) {
      if (lda) return GemmStrip<I, R, V, true, true>(a, lda, depth, b, ldb, ahead, acc, width, o, ldo);
      return GemmStrip<I, R, V, false, true>(a, 0, depth, b, ldb, ahead, acc, width, o, ldo);
    }
  }
  if (lda) return GemmStrip<I, R, V, true, false>(a, lda, depth, b, ldb, ahead, acc, width, o, ldo);
  GemmStrip<I, R, V, false, false>(a, 0, depth, b, ldb, ahead, acc, width, o, ldo);
}

// Rows of a packed strip GemmStrip fetches ahead (into the next strip at a strip's end): the
// chunk is in L2, and 32 rows of about 6 cycles each cover its latency.
static const int kPackedAheadRows = 32;

// What GemmStrip fetches ahead of strip s of a unit (strips [.., s1), packed from first_packed
// on; strip(i): strip i's first row). Packed: kPackedAheadRows. Read in place: the next strip
// (row c of it on row c), also past the unit's last strip, and in the unit's first panel the
// strip after that into L2 as well. In place, x comes from memory in a batch (a layer's input of 16
// images is 12.8 MB at 56x56, and only 4-8 MB stayed in a Zen 4 VM's L3). A stage-1 product of
// ResNet-18-fast (k = 16, m = 64) alone on 16 images in turn, one thread, Zen 4, most rounds:
// 32 rows ahead 192-343 us an image, one strip ahead 181-218, with the strip after it into L2 as
// well 137-204 (one image over and over: 67-105, unchanged). Whole networks, one thread, batch 16, calls
// alternating with the 32 rows in one process: ResNet-18-fast 0.05 0.92-0.94 of the time
// (AVX2 kernels 0.90, two threads 0.96); ResNet-18-accurate 0.05, whose strips are packed, 0.99.
template <class Strip>
static inline StripAhead Ahead(int64_t s, int64_t s1, int64_t first_packed, bool first_panel, int depth,
                               const Strip& strip) {
  if (s >= first_packed) return {s + 1 < s1 ? strip(s + 1) : strip(s), kPackedAheadRows, nullptr};
  // (a packed next strip has other row pitches: then nothing past b)
  const float* next = s + 1 < first_packed ? strip(s + 1) : strip(s);
  return {next, depth, first_panel && s + 2 < first_packed ? strip(s + 2) : nullptr};
}

// One unit of work of DictionaryProduct: rows [c0, c0 + depth) of x, its strips [s0, s1) and
// the rows [r0, r1) of the product (D's listed rows), in panels of kPanelRows from r0. Strips
// from first_packed on are packed into `own` first; the others are read in place.
template <class I>
static inline void ProductUnit(const Product& pr, int64_t c0, int depth, int64_t s0, int64_t s1, int64_t first_packed,
                               int64_t r0, int64_t r1, float* own) {
  const int64_t W = StripFloats<I>();
  PackStrips<I>(pr.x, pr.ldx, pr.cols, c0, depth, first_packed, s1, own, W, pr.x_columns);
  const auto strip = [&](int64_t i) {  // strip i's first row
    return i < first_packed ? pr.x + c0 * pr.ldx + i * W : own + (i - first_packed) * depth * W;
  };
  for (int64_t r = r0; r < r1; r += I::kPanelRows) {
    const int count = static_cast<int>(std::min<int64_t>(I::kPanelRows, r1 - r));
    const float* a[I::kPanelRows];
    for (int i = 0; i < count; ++i) a[i] = pr.d + (*pr.rows)[r + i] * pr.m + c0;
    const bool consecutive = (*pr.rows)[r + count - 1] - (*pr.rows)[r] == count - 1;  // (rows ascend)
    const int64_t lda = consecutive ? pr.m : 0;
    float* o = pr.out + r * pr.ldo;  // the panel's first row of out
    for (int64_t s = s0; s < s1; ++s) {
      const float* b = strip(s);
      const int64_t ldb = s < first_packed ? pr.ldx : W, j0 = s * W, width = std::min(W, pr.cols - j0);
      const bool acc = c0 > 0;  // later passes add to the earlier ones
      const StripAhead ahead = Ahead(s, s1, first_packed, r == r0, depth, strip);
      const auto run = [&](float* dst, int64_t ld) {
        if (width <= I::kLanes) StripOfPanel<I, 1>(count, a, lda, pr.m, depth, b, ldb, ahead, acc, width, dst, ld);
        else StripOfPanel<I, 2>(count, a, lda, pr.m, depth, b, ldb, ahead, acc, width, dst, ld);
      };
      if (OneOutSegment(pr, j0, width)) {
        run(o + OutColumn(pr, j0), pr.ldo);
      } else {  // the strip's columns end one row of out and start the next: through a copy
        alignas(64) float part[I::kPanelRows * StripFloats<I>()];
        if (acc) MoveColumns(pr, count, j0, width, o, part, W, false);
        run(part, W);
        MoveColumns(pr, count, j0, width, o, part, W, true);
      }
    }
  }
}

// A one-column product (a fully connected layer at batch 1) is a matrix-vector product: D streams
// from memory once, kMatVecRows rows side by side (DotRows), each thread a contiguous share of
// them. Alone in C++ on Zen 4 with D evicted first (medians of 30, three rounds), against
// OpenBLAS's cblas_sgemv: AlexNet's 1000 x 4096 classifier one thread 792-874 -> 677-719 us,
// two 502-546 -> 496-502; its 512 x 4096 fc7 dictionary 390-458 -> 347-369 and 268-281 -> 237-258;
// ResNet-18's 1000 x 512 classifier 172-198 -> 137-146 and 98-116 -> 79-85. 4, 6, 12 and 16
// rows side by side were slower than 8.
template <class I>
static inline void MatVec(const float* d, const std::vector<int>& rows, int64_t m, const float* x, float* out,
                          int threads) {
  constexpr int R = I::kMatVecRows;
  const int64_t k = rows.size(), groups = (k + R - 1) / R;
  StaticFor(groups, threads, [&](int64_t grp, int) {
    const int64_t i0 = grp * R, n = std::min<int64_t>(R, k - i0);
    const float* a[R];
    for (int r = 0; r < R; ++r) a[r] = d + rows[i0 + std::min<int64_t>(r, n - 1)] * m;  // a last group repeats a row
    float dots[R];
    DotRows<I, R>(a, x, static_cast<int>(m), dots);
    std::copy(dots, dots + n, out + i0);
  });
}

// The product pr (all of its `strips` in one chunk, those from first_packed on packed) with the
// depth split between the threads: thread t sums its share of x's rows (input channels) into
// out (t = 0) or into its partial (pr.depth_partials, zeroed first), and after a barrier the
// threads add the partials into out, each a share of the rows. Adding in this order, the sum is
// the same as one thread's, in another order of its terms.
template <class I>
static inline void SplitDepthProduct(const Product& pr, int64_t strips, int64_t first_packed, int max_depth,
                                     int threads, float* packed) {
  const int64_t rows = pr.rows->size(), partial = rows * pr.ldo, scratch = PackedFloats<I>(pr.m, pr.deep);
  // a row's floats written: cols, or up to the last column's place in out's padded rows
  const int64_t row_span = pr.row_width ? OutColumn(pr, pr.cols - 1) + 1 : pr.cols;
  OnTeam(threads, [&](int t, int team) {
    const Share depth = ShareOf(pr.m, t, team);
    Product part = pr;
    if (t > 0) {
      part.out = pr.depth_partials + (t - 1) * partial;
      std::fill(part.out, part.out + partial, 0.f);
    }
    for (int64_t c0 = depth.first; c0 < depth.last; c0 += max_depth)  // (c0 > 0: added to what is there)
      ProductUnit<I>(part, c0, static_cast<int>(std::min<int64_t>(max_depth, depth.last - c0)), 0, strips,
                     first_packed, 0, rows, packed + t * scratch);
#pragma omp barrier
    const Share mine = ShareOf(rows, t, team);
    for (int j = 1; j < team; ++j)
      for (int64_t r = mine.first; r < mine.last; ++r) {
        float* o = pr.out + r * pr.ldo;
        const float* q = pr.depth_partials + (j - 1) * partial + r * pr.ldo;
        for (int64_t i = 0; i < row_span; ++i) o[i] += q[i];
      }
  });
}

// The product pr over `threads` threads. `packed`: threads x PackedFloats(m, pr.deep) floats of
// scratch.
template <class I>
static inline void DictionaryProduct(const Product& pr, int threads, float* packed) {
  const int64_t m = pr.m, cols = pr.cols;
  if (cols == 1 && pr.ldx == 1 && pr.ldo == 1) return MatVec<I>(pr.d, *pr.rows, m, pr.x, pr.out, threads);
  const int64_t W = StripFloats<I>(), strips = (cols + W - 1) / W, full_strips = cols / W;
  const int64_t panels = (static_cast<int64_t>(pr.rows->size()) + I::kPanelRows - 1) / I::kPanelRows;
  const int max_depth = static_cast<int>(ProductDepth<I>(m, cols, pr.deep));
  // Units of work: column chunks of at most PackedFloats, as many as give every thread the same
  // share; with fewer chunks than threads (a few columns: fully connected layers in a batch),
  // each chunk's rows of D in groups, one per thread (each packing the chunk for itself). When all
  // columns fit one chunk (ResNet-18's 7x7 layers: 49 columns in 3 strips and 1 column), the
  // threads take D's rows in groups over the whole chunk instead: each reads its share of D,
  // the larger operand (ResNet-18-accurate's 2 MB at 7x7), and the uneven strips no longer
  // unbalance them. That layer alone at two threads, batch 1: medians 1.52-2.01 -> 1.32-1.64 ms.
  // Each thread takes consecutive chunks (a band of the image's rows, which the lookups and the
  // next layer read in order) rather than every other one: ResNet-18-fast 0.03 at two threads,
  // batch 1, 40 alternating rounds, 0.992 of the time (31 rounds faster).
  // Chunks and groups are ShareOf the strips and the rows, not runs of per_chunk strips and whole
  // panels: ResNet-18-fast's 98 strips at 56x56 went 52 / 46 to the two threads, 25 at 28x28
  // 14 / 11 (the last half a strip), and 64 and 128 rows at 14x14 and 7x7 36 / 28 and 72 / 56.
  // lcnn-predict at two threads, batch 1, alternating rounds, medians: ResNet-18-fast 0.03 0.945
  // -> 0.929 ms (36 rounds), ResNet-18-accurate 0.05 6.13 -> 6.06 (10); AlexNet-fast, one thread
  // and batches of images in parallel unchanged.
  // Groups of rows only where D is the larger operand (more listed rows than x has columns):
  // AlexNet's 13x13 products (k = 30, 169 columns) read all of x in each thread, half of it
  // written by the other core; in column chunks each reads half of x. AlexNet-fast at two
  // threads, batch 1, lcnn-predict, alternating: 0.944-1.091 of the time, median 0.98 (16 rounds).
  const int64_t scratch = PackedFloats<I>(m, pr.deep), fitting = scratch / (max_depth * W);
  const bool d_larger = static_cast<int64_t>(pr.rows->size()) > cols;
  const bool panel_groups = threads > 1 && strips <= fitting && panels >= threads && !pr.x_larger && d_larger;
  const int64_t rounds = ((strips + fitting - 1) / fitting + threads - 1) / threads;
  const int64_t per_chunk = panel_groups ? strips : (strips + rounds * threads - 1) / (rounds * threads);
  const int64_t chunks = (strips + per_chunk - 1) / per_chunk;
  const int64_t groups =
      panel_groups ? threads : std::max<int64_t>(1, std::min<int64_t>(panels, threads / chunks));
  const bool pack = panels / groups >= kPackMinPanels || pr.x_columns;  // (gathered columns: no x to read in place)
  if (pr.depth_partials && threads > 1 && strips <= fitting && !pr.x_columns && !pr.deep)
    return SplitDepthProduct<I>(pr, strips, pack ? 0 : full_strips, max_depth, threads, packed);
  for (int64_t c0 = 0; c0 < m; c0 += max_depth) {
    const int depth = static_cast<int>(std::min<int64_t>(max_depth, m - c0));
    StaticFor(chunks * groups, threads, [&](int64_t unit, int t) {  // chunk by chunk, its groups in turn
      const int64_t q = unit / groups, group = unit % groups;
      const Share chunk = ShareOf(strips, static_cast<int>(q), static_cast<int>(chunks));
      const Share rows = ShareOf(pr.rows->size(), static_cast<int>(group), static_cast<int>(groups));
      const int64_t s0 = chunk.first, s1 = chunk.last;
      ProductUnit<I>(pr, c0, depth, s0, s1, pack ? s0 : std::max(s0, full_strips), rows.first, rows.last,
                     packed + t * scratch);
    });
  }
}

// AccumulateClassTile for `vectors` (1 .. V) registers, picked at compile time, and any number of
// classes (one: no shifts).
template <class I, int V = I::kClassTileVectors>
static inline void AccumulateClassTileOf(int classes, int vectors, const float* s, const int* off, const float* coef,
                                         const int* starts, float bias, bool partial, bool relu, float* out) {
  if constexpr (V > 1) {
    if (vectors < V)
      return AccumulateClassTileOf<I, V - 1>(classes, vectors, s, off, coef, starts, bias, partial, relu, out);
  }
  if (classes == 1) return AccumulateClassTile<I, V, false>(s, off, coef, starts, 1, bias, partial, relu, out);
  AccumulateClassTile<I, V, true>(s, off, coef, starts, classes, bias, partial, relu, out);
}

#endif  // LCNN_LOOKUP_CONV_STAGES_H_
