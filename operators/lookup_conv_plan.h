// The execution plan of lcnn_lookup_conv: every decision the operator takes for one input shape,
// thread count and packed content, made once (BuildPlan) and read by the kernels
// (lookup_conv.cc). Nothing here runs vector instructions.
#ifndef LCNN_LOOKUP_CONV_PLAN_H_
#define LCNN_LOOKUP_CONV_PLAN_H_

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "lookup_conv_attrs.h"
#include "lookup_conv_format.h"

// ------------------------------------------------------------------ thresholds, and why
// S rows for all dictionary vectors (no compaction) unless P uses at most 3/4 of them: a
// compact S saves work only when many vectors are unused, and a one-column product over
// listed rows of D gives up OpenBLAS's matrix-vector product for one dot product per row.
static const int kCompactNumerator = 3, kCompactDenominator = 4;
// Compute only the S values P reads (one dot product each) when they are at most a quarter of
// S: a dot product costs about four times a value of the blocked product.
static const int kNeededDivisor = 4;
// Accumulate output tiles position by position over all channels (each tile's S rows then
// stay in L2) when S is larger than 64K floats (256 KB, half of one core's L2 on the machines
// measured) and channels have 16+ entries on average (fewer: each channel reads little of S).
static const int64_t kTileMajorMinFloats = 64 << 10;
static const int kTileMajorMinEntries = 16;
// Tile by tile, the S values one output tile reads span, per S row, its stride phases' segments
// of (tile + largest tap shift) floats. When all rows' segments exceed 16 KB (half of the 32 KB
// L1 data cache of the CPUs measured), the rows are taken in blocks whose segments fit, and each
// channel's tile is accumulated block by block (partial sums stored in between): every entry then
// reads S from L1 instead of L2. A channel's entries are split into consecutive runs, one per
// block: in row order (the packer's) each run reads its block's rows only; in any other order the
// result is the same and only the locality is lost.
static const int64_t kTileFootprintBytes = 16 << 10;
// ... but no more blocks than leave a channel 16 entries in each on average: every block costs a
// load and a store of the tile's partial sums (AlexNet's conv1, 30 entries a channel in 3 blocks,
// was 5-10% slower blocked).
static const int kMinBlockEntries = 16;

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
  bool product_then_split = false;  // k < m: S = D x X on the unpadded input, then split (fewer planes)
  // Otherwise the product covers only the stride phases the kernel reaches (ReachedPhases), as
  // runs of consecutive phases: (first phase, phases).
  std::vector<std::pair<int, int>> phase_runs;
  bool few_outputs = false;         // ext < kFewOutputs: outputs gathered one by one, no tiles
  bool only_needed = false;         // compute only the S values P reads
  bool tile_major = false;
  int row_blocks = 1;               // tile_major: blocks of S rows, accumulated one after another
  std::vector<int> block_starts;    // tile_major: channel f's entries of block b start at
                                    // block_starts[f * (row_blocks + 1) + b] (absolute entry index)
  std::vector<int> rows;            // S row i holds dictionary vector rows[i]
  bool all_rows = true;             // rows is 0..k-1 (D usable as it is)
  std::vector<int> entry_offsets;   // per CSR entry: where in S its tap's plane starts
  std::vector<int> needed;          // only_needed: the S values read, sorted
};

// row_blocks and block_starts of a tile-major plan (one block when S's tile segments fit L1).
static inline void PlanRowBlocks(const Params& p, const Geometry& g, int tile_floats, const int* indptr,
                                 const int* indices, const std::vector<int>& row_of, Plan* plan) {
  plan->row_blocks = 1;
  plan->block_starts.clear();
  if (!plan->tile_major) return;
  const int taps = p.kh * p.kw, filters = p.num_filter;
  const int64_t shift = (p.kh - 1) / p.sh * g.wq + (p.kw - 1) / p.sw;
  const int64_t row_bytes = static_cast<int64_t>(p.sh) * p.sw * (tile_floats + shift) * sizeof(float);
  const int64_t rows = plan->rows.size();
  const int64_t fitting = std::max<int64_t>(1, kTileFootprintBytes / row_bytes);  // rows whose segments fit
  const int64_t affordable = indptr[filters] / (static_cast<int64_t>(kMinBlockEntries) * filters);
  const int64_t blocks = std::max<int64_t>(1, std::min((rows + fitting - 1) / fitting, affordable));
  const int64_t per_block = (rows + blocks - 1) / blocks;
  plan->row_blocks = static_cast<int>(blocks);
  plan->block_starts.resize(static_cast<size_t>(filters) * (plan->row_blocks + 1));
  for (int f = 0; f < filters; ++f) {
    int* starts = plan->block_starts.data() + static_cast<size_t>(f) * (plan->row_blocks + 1);
    int j = indptr[f];
    for (int b = 0; b < plan->row_blocks; ++b) {
      starts[b] = j;
      while (j < indptr[f + 1] && row_of[indices[j] / taps] / per_block == b) ++j;
    }
    starts[plan->row_blocks] = indptr[f + 1];
  }
}

// The plan for input shape (batch, m, h, w) with k dictionary vectors, `threads` threads, output
// tiles of `tile_floats` and the packed rows (indptr, indices); an MX_FAIL with a message for
// malformed packing.
static inline MXReturnValue BuildPlan(const Params& p, const Geometry& g, int64_t batch, int threads, int tile_floats,
                                      const int* indptr, size_t rows_plus_one, const int* indices,
                                      size_t nnz, Plan* plan) {
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
  const int64_t used_count = std::count(used.begin(), used.end(), 1);
  plan->all_rows = used_count * kCompactDenominator > g.k * kCompactNumerator;
  std::vector<int> row_of(g.k, -1);
  plan->rows.clear();
  for (int d = 0; d < g.k; ++d) {
    if (plan->all_rows || used[d]) {
      row_of[d] = static_cast<int>(plan->rows.size());
      plan->rows.push_back(d);
    }
  }
  plan->entry_offsets.resize(nnz);
  for (size_t j = 0; j < nnz; ++j) {
    int d, r, c;
    UnpackIndex(indices[j], p.kh, p.kw, &d, &r, &c);
    const int phase = (r % p.sh) * p.sw + c % p.sw;
    plan->entry_offsets[j] = static_cast<int>(row_of[d] * g.cols + phase * g.plane + (r / p.sh) * g.wq + c / p.sw);
  }
  plan->few_outputs = g.ext < kFewOutputs;
  const int reach_y = ReachedPhases(p.kh, p.sh), reach_x = ReachedPhases(p.kw, p.sw);
  const bool all_phases = reach_y == p.sh && reach_x == p.sw;
  plan->product_then_split = g.k < g.m && all_phases;  // with phases unreached, splitting first is cheaper
  plan->phase_runs.clear();
  if (reach_x == p.sw) {
    plan->phase_runs.emplace_back(0, reach_y * p.sw);  // whole rows of phases: one run
  } else {
    for (int py = 0; py < reach_y; ++py) plan->phase_runs.emplace_back(py * p.sw, reach_x);
  }
  plan->needed.clear();
  if (plan->few_outputs) {  // the columns kept of each entry's extended row
    for (size_t j = 0; j < nnz; ++j)
      for (int64_t e = 0; e < g.ext; ++e)
        if (e % g.wq < g.wo) plan->needed.push_back(static_cast<int>(plan->entry_offsets[j] + e));
    std::sort(plan->needed.begin(), plan->needed.end());
    plan->needed.erase(std::unique(plan->needed.begin(), plan->needed.end()), plan->needed.end());
  }
  const int64_t s_size = static_cast<int64_t>(plan->rows.size()) * g.cols;
  plan->images_in_parallel = threads > 1 && batch >= threads;
  plan->batched_few_outputs = plan->few_outputs && batch > 1 && !p.pool_kh && !p.residual &&
                              !plan->rows.empty();
  plan->only_needed = plan->few_outputs && !plan->batched_few_outputs && !plan->needed.empty() &&
                      static_cast<int64_t>(plan->needed.size()) * kNeededDivisor <= s_size;
  plan->tile_major = !plan->few_outputs && s_size > kTileMajorMinFloats &&
                     nnz >= static_cast<size_t>(kTileMajorMinEntries) * p.num_filter;
  PlanRowBlocks(p, g, tile_floats, indptr, indices, row_of, plan);
  return MX_SUCCESS;
}

#endif  // LCNN_LOOKUP_CONV_PLAN_H_
