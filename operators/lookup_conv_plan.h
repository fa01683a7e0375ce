// The execution plan of lcnn_lookup_conv: every decision the operator takes for one input shape,
// thread count and packed content, made once (BuildPlan) and read by the kernels
// (lookup_conv.cc). The thresholds it decides by, each with why, are in
// lookup_conv_thresholds.h. Nothing here runs vector instructions.
#ifndef LCNN_LOOKUP_CONV_PLAN_H_
#define LCNN_LOOKUP_CONV_PLAN_H_

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "lookup_conv_attrs.h"
#include "lookup_conv_format.h"
#include "lookup_conv_thresholds.h"

// ------------------------------------------------------------------ the plan
struct Plan {
  Geometry geometry;
  int64_t batch = 0;
  int threads = 1;
  // Parallelism: whole images per thread when the batch has at least as many images as threads
  // (no synchronisation inside an image); otherwise the threads share each image's work.
  bool images_in_parallel = false;
  // Layers with a few outputs per channel (fully connected ones), in a batch without pooling or
  // shortcut: one product over the whole batch (D is read once, not once per image) and the
  // lookups vectorised over the images.
  bool batched_few_outputs = false;
  // Stride 1: S = D x X on the unpadded input, stored straight into S's padded rows (no split).
  bool product_into_s = false;
  bool product_then_split = false;  // S = D x X on the unpadded input, then split (kSplitFloatMultiplyAdds)
  bool row_product = false;         // S = D x X row by row, split as it goes (kRowProductMaxChannels)
  // A 1x1 kernel at a stride, unpadded (ResNet's shortcuts): S's one reached phase is X at every
  // stride-th pixel, and the product packs exactly those columns of X, gathered, where X was
  // split into all its phases first. x_columns: for each position of that phase's rows (ho rows
  // of wq), the pixel's offset in an input plane, or -1 past the wo outputs of a row (S's columns
  // there stay zero). ResNet-18-fast 0.03, one thread, batch 1, the two shortcuts' split and
  // product 166 -> 138-140 µs (56x56 -> 28x28) and 151 -> 108-112 (28x28 -> 14x14); the whole
  // call (lcnn-predict, 8 alternating pairs, medians) 3.23 -> 3.14 ms, two threads unchanged.
  bool gathered_input = false;
  // ... whose P is the identity (channel f's one entry is D's row f: a plain layer the export put
  // on the operator, docs/design.md), without act, pooling or shortcut, on output rows without
  // padding columns. On calls whose coefficients are all 1 and biases 0 (UnitCoefficients; the
  // export folds a plain layer's scale into D and, in a residual block, its bias into the
  // block's last layer) the output is the product itself: it stores its rows straight into the
  // output channels and there is no lookup stage. ResNet-18-fast 0.03 (lcnn-predict, alternating
  // processes, medians of 6-10 rounds), its three shortcuts so: one thread, batch 1, 0.963 of the
  // time; batch 16 0.975; two threads, batch 1, 0.96.
  bool identity_lookups = false;
  // Stride 1 on maps of a few columns a row, with many dictionary rows: S = D x X transposed
  // (lookup_conv_transposed.h; kTransposedProductMaxWidth), stored into S's padded rows.
  bool transposed_product = false;
  // Stride 1, one image shared by the threads, a small map (kSplitDepthMaxWidth) and no more
  // dictionary rows than pixels: the general product split by depth, each thread a partial S
  // (Workspace::depth_partials) added into S after (DictionaryProduct)
  bool split_depth = false;
  std::vector<int> x_columns;
  // Stride 1, in a batch of small images (kBatchedProductMaxPixels): S = D x X for groups of
  // product_images images in one product, into one buffer holding each image's S after the other.
  bool batched_product = false;
  int64_t product_images = 1;
  // Images interleaved in S and in the tiles (lanes of them, the register's; 1: one image at a
  // time). The lookup stage's offsets, tiles (in pixels, a register each) and row blocks are then
  // those of the interleaved S.
  int64_t interleave = 1;
  int64_t s_floats = 0;             // one image's S: rows x cols
  // Otherwise the product covers only the stride phases the kernel reaches (ReachedPhases), as
  // runs of consecutive phases: (first phase, phases).
  std::vector<std::pair<int, int>> phase_runs;
  bool few_outputs = false;         // ext < kFewOutputs: outputs gathered one by one, no tiles
  // ... and only one a channel, without pooling or shortcut (fully connected): every channel's
  // gather in one loop (OneOutputChannels); over a batch, stored in blocks (OneOutputImages)
  bool one_output = false;
  // Output tiles of the lookup stage (PlanTiles): row tiles of tile_rows rows x tile_vectors
  // registers (row_segments of them across a row), stored straight into the output with the
  // shortcut added; or flat tiles of the extended plane (tile_vectors registers each), copied
  // out of it afterwards. tile_span: the floats of an S plane one tile reads, shifts aside.
  bool row_tiles = false;
  int lanes = 8, tile_rows = 1, tile_vectors = 1, row_segments = 1;
  int64_t tiles = 0, tile_span = 0;
  bool only_needed = false;         // compute only the S values P reads
  // A transposed dictionary (fully connected), one image: S from the rows of the non-zero inputs
  // (SparseInputProduct); in a batch it takes batched_few_outputs, its product all images in
  // one panel on one register of columns (ImagesPanelProduct) when the kernel set's registers
  // hold that many images' accumulators (TileRegisters::images_panel), else the general product
  bool sparse_input = false;
  bool images_panel = false;
  bool tile_major = false;
  // A fused 3x3, stride-2 max pooling taken in registers, the lookups pooled row by pooled row
  // (PooledRows, lookup_conv_pooled.h; PooledRowsFit says which layers)
  bool pooled_rows = false;
  // tile_major, or one_output over a batch: blocks of S rows, accumulated one after another,
  // each within tile_footprint bytes of tile segments (TileFootprintBytes)
  int row_blocks = 1;
  int64_t tile_footprint = kTileFootprintMinBytes;
  // row blocks: each block's entries of a channel in BlockRuns runs (one per class, or one), the
  // runs in (block, channel, class) order; channel f's run r of block b starts at
  // RunStarts(plan, f, b)[r] and ends where the next starts (absolute entry indices)
  std::vector<int> block_starts;
  std::vector<int> first_block, last_block;  // row blocks: channel f's first and last block with entries
  int classes = 0;                  // class tiles of this many classes (0: none)
  bool halved_class_tiles = false;  // ... of half the kernel set's registers (kClassBlockSpanBytes)
  // several row blocks, or class tiles: the plan's entry i is the packed entry
  // entry_order[i], in block-major order (block by block, each block's runs channel by channel;
  // PlanRowBlocks says why)
  std::vector<int> entry_order;
  std::vector<int> rows;            // S row i holds dictionary vector rows[i]
  std::vector<int> entry_offsets;   // per CSR entry: where in S its tap's plane starts
  std::vector<int> needed;          // only_needed: the S values read, sorted
  // thread t's channels of the lookup stage: [channel_split[t], channel_split[t + 1])
  std::vector<int> channel_split;
};

// channel_split: contiguous ranges of about equal work (kChannelFixedEntries); every channel
// alike when the lookups ran tile by tile before and a channel is only its epilogue.
static inline void PlanChannelSplit(int filters, const int* indptr, bool uniform, int threads, Plan* plan) {
  const auto work = [&](int f) { return uniform ? 1 : int64_t{indptr[f + 1]} - indptr[f] + kChannelFixedEntries; };
  int64_t total = 0;
  for (int f = 0; f < filters; ++f) total += work(f);
  plan->channel_split.assign(threads + 1, filters);
  plan->channel_split[0] = 0;
  int64_t done = 0;
  int t = 1;
  for (int f = 0; f < filters && t < threads; ++f) {
    done += work(f);
    while (t < threads && done * threads >= total * t) plan->channel_split[t++] = f + 1;
  }
}

// Whether layer p's pooling can be taken in registers (PooledRows): a 3x3 window at stride 2,
// padded by at most 1, over output rows of kPooledRowMinRegisters to `registers` registers of
// `lanes` floats that S holds (each phase plane's spare row past the widest tap: rows wq floats
// apart). Not for tile-major layers: their many entries a channel go to class tiles (AlexNet's
// conv1).
static inline bool PooledRowsFit(const Params& p, const Geometry& g, int lanes, int registers) {
  const int64_t row_registers = OutputRowRegisters(g, lanes);
  return p.pool_kh == 3 && p.pool_kw == 3 && p.pool_sh == 2 && p.pool_sw == 2 && p.pool_ph <= 1 &&
         p.pool_pw <= 1 && !p.residual && row_registers >= kPooledRowMinRegisters && row_registers <= registers &&
         (p.kw - 1) / p.sw + row_registers * lanes <= 2 * g.wq;
}

// The kernel set's registers: lanes per register, accumulators per flat, row and class tile (0:
// no class tiles), images per panel of a transposed dictionary's product (0: none) and pixels
// per kernel of the transposed product (0: none).
struct TileRegisters {
  int lanes, flat, row, class_tile, images_panel, transposed_pixels;
};

// Runs per block of a tile-major plan, and the starts of channel f's runs in block blk.
static inline int BlockRuns(const Plan& plan) { return std::max(1, plan.classes); }
static inline const int* RunStarts(const Plan& plan, int f, int blk) {
  const size_t filters = plan.first_block.size();
  return plan.block_starts.data() + (static_cast<size_t>(blk) * filters + f) * BlockRuns(plan);
}

// One row tile: output rows [oy, oy + rows), columns [ox, ox + width).
struct RowTile {
  int64_t oy, ox;
  int rows, width;
};

// The tiles of a plane, for the kernel set's registers. Row tiles when
//  - a row's registers reach no further than its extended row (vectors x lanes <= wq), so that
//    they compute no more lanes than flat tiles;
//  - no pooling follows: pooling reads extended rows anyway, and there row tiles (of fewer
//    registers when rows are cut into segments) were slower: ResNet-18's conv1, 112 columns in
//    two segments of 7 registers, 0.71-0.73 -> 0.79-0.80 ms;
//  - the plan is not tile-major: its partial sums would be loaded and stored under masks once
//    per block, and its many entries a channel make the copy out of extended rows a small part
//    (ResNet-18-accurate's 14x14 and 7x7 layers were 10% slower with row tiles).
// Then nothing is copied out of extended rows and the shortcut is added as a tile is stored:
// a ResNet-18-fast 56x56 layer with its shortcut (4 entries a channel), called alone from
// Python, 0.279-0.290 -> 0.264-0.277 ms. Rows wider than regs.row registers are cut into equal
// segments. Called once few_outputs and tile_major are known.
// Floats of a flat tile: the kernel set's flat registers of `lanes` floats.
static inline int64_t FlatTileSpan(const TileRegisters& regs, int lanes) { return int64_t{regs.flat} * lanes; }

static inline void PlanTiles(const Params& p, const Geometry& g, const TileRegisters& regs, Plan* plan) {
  const int lanes = plan->interleave > 1 ? 1 : regs.lanes;  // interleaved: a register is a pixel
  const int64_t row_vectors = OutputRowRegisters(g, lanes);
  plan->lanes = lanes;
  plan->row_tiles = plan->interleave > 1 ||
                    (!plan->few_outputs && !p.pool_kh && !plan->tile_major && row_vectors * lanes <= g.wq);
  if (!plan->row_tiles) {
    plan->tile_rows = 1, plan->tile_vectors = regs.flat, plan->row_segments = 1;
    plan->tile_span = FlatTileSpan(regs, lanes);
    plan->tiles = (g.ext + plan->tile_span - 1) / plan->tile_span;
    return;
  }
  plan->row_segments = static_cast<int>((row_vectors + regs.row - 1) / regs.row);
  plan->tile_vectors = static_cast<int>((row_vectors + plan->row_segments - 1) / plan->row_segments);
  plan->tile_rows = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(g.ho, regs.row / plan->tile_vectors)));
  plan->tiles = (g.ho + plan->tile_rows - 1) / plan->tile_rows * plan->row_segments;
  plan->tile_span = (plan->tile_rows - 1) * g.wq + static_cast<int64_t>(plan->tile_vectors) * lanes;
}

// Row tile ti of a plan with row tiles: row groups of tile_rows, each cut into row_segments.
static inline RowTile RowTileAt(const Plan& plan, int64_t ti) {
  const Geometry& g = plan.geometry;
  const int64_t group = ti / plan.row_segments, segment = ti % plan.row_segments;
  const int64_t segment_floats = static_cast<int64_t>(plan.tile_vectors) * plan.lanes;
  RowTile t;
  t.oy = group * plan.tile_rows;
  t.ox = segment * segment_floats;
  t.rows = static_cast<int>(std::min<int64_t>(plan.tile_rows, g.ho - t.oy));
  t.width = static_cast<int>(std::min<int64_t>(segment_floats, g.wo - t.ox));
  return t;
}

// A fully connected layer over a batch (OneOutputImages): its row blocks hold S's lines of all images.
static inline bool GatheredBatch(const Plan& plan) { return plan.batched_few_outputs && plan.one_output; }

// The bytes of tile segments one row block may span, for a core of l1_bytes of L1 data cache
// (0: unknown).
static inline int64_t TileFootprintBytes(int64_t l1_bytes) {
  return std::max(kTileFootprintMinBytes, l1_bytes / kTileFootprintL1Divisor);
}

// How a plan's S rows fall into row blocks (PlanRowBlocks): as many blocks as keep one block's
// segments within plan.tile_footprint (kGatherBlockBytes for a fully connected layer over a
// batch), but no more than leave each channel kMinBlockEntries entries in a block on average.
struct RowBlocking {
  int64_t blocks = 1;
  int per_block = 0;      // S rows a block
  int64_t row_bytes = 0;  // what one S row puts in a block: a tile's segments
};
static inline RowBlocking RowBlockingOf(const Params& p, const Geometry& g, const Plan& plan, int64_t entries) {
  const bool gathered_batch = GatheredBatch(plan);
  const int64_t shift = (p.kh - 1) / p.sh * g.wq + (p.kw - 1) / p.sw;
  const int64_t covered = std::min(plan.tile_span, (g.ext + plan.lanes - 1) / plan.lanes * plan.lanes);
  const int64_t row_floats =
      gathered_batch ? g.cols * plan.batch
                     : static_cast<int64_t>(p.sh) * p.sw * (covered + shift) * plan.interleave;
  RowBlocking b;
  b.row_bytes = row_floats * static_cast<int64_t>(sizeof(float));
  const int64_t rows = plan.rows.size();
  const int64_t fitting = std::max<int64_t>(1, (gathered_batch ? kGatherBlockBytes : plan.tile_footprint) / b.row_bytes);
  const int64_t affordable = entries / (static_cast<int64_t>(kMinBlockEntries) * p.num_filter);
  b.blocks = std::max<int64_t>(1, std::min((rows + fitting - 1) / fitting, affordable));
  b.per_block = static_cast<int>((rows + b.blocks - 1) / b.blocks);
  return b;
}

// row_blocks and block_starts of a tile-major plan (one block when S's tile segments fit L1), or
// of a fully connected layer over a batch (one block when its S fits kGatherBlockBytes).
// With several blocks or class tiles the entries are put in block-major order (entry_order): the
// block loop then reads each block's entries of all channels as one stream, which the hardware
// prefetches, where in channel order it read a short run from another place of the arrays for
// every channel (ResNet-18-accurate's 7x7 layers: 17 blocks of about 16 entries a channel).
static inline void PlanRowBlocks(const Params& p, const Geometry& g, const int* indptr,
                                 const int* indices, const std::vector<int>& row_of, Plan* plan) {
  plan->row_blocks = 1;
  plan->block_starts.clear();
  plan->first_block.clear();
  plan->last_block.clear();
  if (!plan->tile_major && !GatheredBatch(*plan)) return;
  const int filters = p.num_filter;
  const RowBlocking blocking = RowBlockingOf(p, g, *plan, indptr[filters]);
  const int64_t blocks = blocking.blocks;
  const int per_block = blocking.per_block;
  plan->row_blocks = static_cast<int>(blocks);
  const int runs = BlockRuns(*plan);
  plan->first_block.assign(filters, plan->row_blocks);
  plan->last_block.assign(filters, -1);
  const auto note_block = [&](int f, int b) {
    plan->first_block[f] = std::min(plan->first_block[f], b);
    plan->last_block[f] = std::max(plan->last_block[f], b);
  };
  if (plan->row_blocks == 1 && plan->classes == 0) {  // one run a channel: the packed order
    plan->block_starts.assign(indptr, indptr + filters + 1);
    for (int f = 0; f < filters; ++f)
      if (indptr[f + 1] > indptr[f]) note_block(f, 0);
    return;
  }
  // entries by (block, channel, class), each group in the packed order
  std::vector<int> group_of(indptr[filters]);  // (block x filters + f) x runs + class
  std::vector<int> count(static_cast<size_t>(blocks) * filters * runs + 1, 0);
  for (int f = 0; f < filters; ++f)
    for (int j = indptr[f]; j < indptr[f + 1]; ++j) {
      int d, r, c;
      UnpackIndex(indices[j], p.kh, p.kw, &d, &r, &c);
      const int b = row_of[d] / per_block;
      group_of[j] = static_cast<int>((static_cast<int64_t>(b) * filters + f) * runs + (plan->classes ? c / p.sw : 0));
      ++count[group_of[j] + 1];
      note_block(f, b);
    }
  for (size_t i = 1; i < count.size(); ++i) count[i] += count[i - 1];  // count[g]: group g's start
  plan->block_starts = count;
  plan->entry_order.resize(indptr[filters]);
  for (int j = 0; j < indptr[filters]; ++j) plan->entry_order[count[group_of[j]]++] = j;
  std::vector<int> offsets(plan->entry_offsets.size());
  for (size_t i = 0; i < offsets.size(); ++i) offsets[i] = plan->entry_offsets[plan->entry_order[i]];
  plan->entry_offsets.swap(offsets);
}

// Whether a plan built on unaligned rows is rebuilt on S rows aligned to registers, and with
// class tiles of how many classes (0: none).
struct RowAlignment {
  bool aligned = false;
  int classes = 0;
};

// Rows are aligned for a kernel set with class tiles, a layer not of few outputs nor interleaved,
// when rounding costs at most kClassRoundingNumerator / kClassRoundingDenominator as many lanes,
// and then
//  - a tile-major layer of flat tiles takes class tiles, of as many classes as column shifts, if
//    they are at most kLanes (a shift's junk lane must not reach the tile, AccumulateClassTile);
//  - a channel-major layer of flat tiles without pooling (a row wider than its unaligned
//    extended row: ResNet-18's 56- and 28-wide maps) takes row tiles, whose loads of the tap
//    column 0 are now aligned, and nothing is copied out of extended rows.
// Row tiles, each layer alone, fastest of 80-1500 calls alternating with the unaligned plan in one
// process (Zen 5, one thread), batch 16 and 1: ResNet-18-fast 0.05's stage-1 layers 0.78-0.90
// and 0.92-0.94 of the time, its stage-2 ones 0.89-1.00 and 0.98-1.01.
static inline RowAlignment AlignmentFor(const Params& p, const Geometry& g, const TileRegisters& regs,
                                        const Plan& plan) {
  const int64_t aligned = (g.wq + regs.lanes - 1) / regs.lanes * regs.lanes;
  if (!regs.class_tile || plan.few_outputs || plan.interleave > 1 || plan.row_tiles ||
      aligned * kClassRoundingDenominator > g.wq * kClassRoundingNumerator)
    return {};
  if (!plan.tile_major)  // (unless the larger S would make it tile-major)
    return {!p.pool_kh && plan.s_floats / g.wq * aligned <= kTileMajorMinFloats, 0};
  const int classes = (p.kw - 1) / p.sw + 1;
  if (classes > regs.lanes) return {};
  return {true, classes};
}

// Whether P is the identity: channel f's only entry is index f (D's row f, at the first tap).
static inline bool IdentityLookups(const int* indptr, const int* indices, int filters) {
  for (int f = 0; f < filters; ++f)
    if (indptr[f + 1] - indptr[f] != 1 || indices[indptr[f]] != f) return false;
  return true;
}

// The plan for input shape (batch, m, h, w) with k dictionary vectors, `threads` threads, the
// kernel set's registers, a core's L1 data cache (l1_bytes, 0: unknown) and the packed rows
// (indptr, indices); an MX_FAIL with a message for malformed packing.
// `classes`: class tiles of that many classes (AlignmentFor; g's rows then aligned), or 0.
static inline MXReturnValue BuildPlan(const Params& p, const Geometry& g, int64_t batch, int threads,
                                      const TileRegisters& regs, int64_t l1_bytes, const int* indptr, size_t rows_plus_one,
                                      const int* indices, size_t nnz, int classes, Plan* plan) {
  if (indptr[0] != 0 || indptr[rows_plus_one - 1] != static_cast<int64_t>(nnz)) {
    MX_ERROR_MSG << "lcnn_lookup_conv: indptr must start at 0 and end at len(indices) = " << nnz
                 << ", got " << indptr[0] << " .. " << indptr[rows_plus_one - 1];
    return MX_FAIL;
  }
  for (size_t f = 0; f + 1 < rows_plus_one; ++f) {
    if (indptr[f + 1] < indptr[f]) {
      MX_ERROR_MSG << "lcnn_lookup_conv: indptr decreases at row " << f;
      return MX_FAIL;
    }
  }
  const int taps = p.kh * p.kw;
  const int64_t limit = g.k * taps;
  std::vector<char> used(g.k, 0);
  for (size_t j = 0; j < nnz; ++j) {
    if (indices[j] < 0 || indices[j] >= limit) {
      MX_ERROR_MSG << "lcnn_lookup_conv: index " << indices[j] << " at entry " << j
                   << " is outside [0, k*kh*kw = " << limit << ")";
      return MX_FAIL;
    }
    used[indices[j] / taps] = 1;
  }
  plan->geometry = g, plan->batch = batch, plan->threads = threads;
  plan->tile_footprint = TileFootprintBytes(l1_bytes);
  const int64_t used_count = std::count(used.begin(), used.end(), 1);
  // (a transposed dictionary's rows are its columns: all of them, not compacted)
  const bool all_rows = p.transposed_dictionary || used_count * kCompactDenominator > g.k * kCompactNumerator;
  std::vector<int> row_of(g.k, -1);
  plan->rows.clear();
  for (int d = 0; d < g.k; ++d) {
    if (all_rows || used[d]) {
      row_of[d] = static_cast<int>(plan->rows.size());
      plan->rows.push_back(d);
    }
  }
  plan->few_outputs = g.ext < kFewOutputs;
  plan->one_output = plan->few_outputs && g.ho == 1 && g.wo == 1 && !p.residual && !p.pool_kh;
  const int64_t rows = plan->rows.size(), pixels = g.h * g.w;
  plan->product_into_s = p.sh == 1 && p.sw == 1 && !plan->few_outputs;
  plan->s_floats = rows * g.cols;
  const int64_t s_bytes = std::max<int64_t>(1, plan->s_floats * static_cast<int64_t>(sizeof(float)));
  // a batch of small maps: one product over the batch, or images interleaved
  const bool small_maps = plan->product_into_s && batch > 1 && rows > 0 && pixels <= kBatchedProductMaxPixels;
  const bool interleaved = small_maps && !p.pool_kh && batch >= regs.lanes &&
                           s_bytes * regs.lanes <= kBatchedProductMaxBytes &&
                           plan->s_floats * regs.lanes <= std::numeric_limits<int>::max();
  plan->interleave = interleaved ? regs.lanes : 1;
  plan->batched_product = small_maps && !interleaved;
  plan->product_images =
      plan->batched_product ? std::clamp<int64_t>(kBatchedProductMaxBytes / s_bytes, 1, batch) : 1;
  const int64_t listed_dictionary_bytes = rows * g.m * static_cast<int64_t>(sizeof(float));  // D's listed rows
  plan->transposed_product = plan->product_into_s && !interleaved && !plan->batched_product &&
                             regs.transposed_pixels > 0 && g.w <= kTransposedProductMaxWidth &&
                             rows >= kTransposedProductMinRows &&
                             listed_dictionary_bytes <= kTransposedProductMaxDictionaryBytes;
  plan->entry_offsets.resize(nnz);
  for (size_t j = 0; j < nnz; ++j) {
    int d, r, c;
    UnpackIndex(indices[j], p.kh, p.kw, &d, &r, &c);
    const int phase = (r % p.sh) * p.sw + c % p.sw;
    plan->entry_offsets[j] = static_cast<int>(
        (row_of[d] * g.cols + phase * g.plane + (r / p.sh) * g.wq + c / p.sw) * plan->interleave);
  }
  const int reach_y = ReachedPhases(p.kh, p.sh), reach_x = ReachedPhases(p.kw, p.sw);
  const bool all_phases = reach_y == p.sh && reach_x == p.sw;
  // (with phases unreached, splitting first is cheaper: its product skips them)
  plan->row_product = !plan->product_into_s && !plan->few_outputs && g.m <= kRowProductMaxChannels && rows > 0;
  plan->product_then_split = !plan->product_into_s && !plan->row_product && all_phases &&
                             rows * g.m * (g.cols - pixels) > kSplitFloatMultiplyAdds * (rows - g.m) * pixels;
  plan->gathered_input = p.kh == 1 && p.kw == 1 && p.ph == 0 && p.pw == 0 && (p.sh > 1 || p.sw > 1) &&
                         !plan->few_outputs && !plan->row_product && rows > 0;
  plan->identity_lookups = plan->gathered_input && !p.relu && !p.residual && !p.pool_kh && g.wq == g.wo &&
                           rows == p.num_filter && IdentityLookups(indptr, indices, p.num_filter);
  plan->x_columns.clear();
  if (plan->gathered_input)
    for (int64_t yo = 0; yo < g.ho; ++yo)
      for (int64_t xq = 0; xq < g.wq; ++xq)
        plan->x_columns.push_back(xq < g.wo ? static_cast<int>(yo * p.sh * g.w + xq * p.sw) : -1);
  plan->phase_runs.clear();
  if (reach_x == p.sw) {
    plan->phase_runs.emplace_back(0, reach_y * p.sw);  // whole rows of phases: one run
  } else {
    for (int py = 0; py < reach_y; ++py) plan->phase_runs.emplace_back(py * p.sw, reach_x);
  }
  plan->needed.clear();
  if (plan->few_outputs) {  // the columns kept of each entry's extended row
    for (size_t j = 0; j < nnz; ++j)
      ForEachOutput(g, [&](int64_t e) { plan->needed.push_back(static_cast<int>(plan->entry_offsets[j] + e)); });
    std::sort(plan->needed.begin(), plan->needed.end());
    plan->needed.erase(std::unique(plan->needed.begin(), plan->needed.end()), plan->needed.end());
  }
  plan->images_in_parallel = threads > 1 && batch >= threads && plan->interleave == 1;
  plan->split_depth = plan->product_into_s && !plan->transposed_product && !plan->batched_product &&
                      plan->interleave == 1 && !plan->images_in_parallel && threads > 1 &&
                      g.w <= kSplitDepthMaxWidth && rows > 0 && rows <= pixels;
  plan->batched_few_outputs = plan->few_outputs && batch > 1 && !p.pool_kh && !p.residual &&
                              !plan->rows.empty();
  plan->sparse_input = p.transposed_dictionary && !plan->batched_few_outputs;
  plan->images_panel = p.transposed_dictionary && plan->batched_few_outputs && batch <= regs.images_panel;
  plan->only_needed = plan->few_outputs && !plan->batched_few_outputs && !plan->needed.empty() &&
                      !p.transposed_dictionary &&
                      static_cast<int64_t>(plan->needed.size()) * kNeededDivisor <= plan->s_floats;
  const int64_t s_floats = plan->s_floats * plan->interleave;
  const bool several_tiles = g.ext > FlatTileSpan(regs, regs.lanes);
  plan->tile_major = !plan->few_outputs && nnz >= static_cast<size_t>(kTileMajorMinEntries) * p.num_filter &&
                     (s_floats > kTileMajorMinFloats || (several_tiles && s_floats > kTileMajorSeveralTilesMinFloats));
  plan->pooled_rows = !plan->few_outputs && !plan->tile_major && plan->interleave == 1 &&
                      PooledRowsFit(p, g, regs.lanes, regs.row);
  PlanTiles(p, g, regs, plan);
  plan->classes = plan->tile_major && !plan->row_tiles && plan->interleave == 1 ? classes : 0;
  plan->entry_order.clear();
  plan->halved_class_tiles = false;
  if (plan->classes) {
    // as few tiles as the registers allow, of equal width (a 27x27 map: 54 registers of extended
    // plane in two tiles of 27, not 28 and 26)
    const int64_t vectors = (g.ext + plan->lanes - 1) / plan->lanes;
    const auto take_widest = [&](int64_t widest) {
      plan->tiles = (vectors + widest - 1) / widest;
      plan->tile_vectors = static_cast<int>((vectors + plan->tiles - 1) / plan->tiles);
      plan->tile_span = static_cast<int64_t>(plan->tile_vectors) * plan->lanes;
    };
    take_widest(regs.class_tile);
    const RowBlocking blocking = RowBlockingOf(p, g, *plan, static_cast<int64_t>(nnz));
    plan->halved_class_tiles =  // (a plane of at most half the registers is one tile either way)
        vectors > regs.class_tile / 2 && blocking.per_block * blocking.row_bytes > kClassBlockSpanBytes;
    if (plan->halved_class_tiles) take_widest(regs.class_tile / 2);
  }
  PlanRowBlocks(p, g, indptr, indices, row_of, plan);
  PlanChannelSplit(p.num_filter, indptr, plan->tile_major, threads, plan);
  return MX_SUCCESS;
}

#endif  // LCNN_LOOKUP_CONV_PLAN_H_
