// What lcnn_lookup_conv keeps for one input shape, thread count and packed content: the plan
// (lookup_conv_plan.h), the content it was built for, and the buffers the plan sizes.
// lookup_conv.cc's Prepare() builds it when any of these changes; the operator's states hand
// it on to the next state of the same key (lookup_conv_pool.h).
#ifndef LCNN_LOOKUP_CONV_PREPARED_H_
#define LCNN_LOOKUP_CONV_PREPARED_H_

#include <omp.h>

#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "lookup_conv_attrs.h"
#include "lookup_conv_epilogue.h"
#include "lookup_conv_kernels.h"
#include "lookup_conv_plan.h"
#include "lookup_conv_pooled.h"
#include "lookup_conv_scratch.h"
#include "lookup_conv_sparse_input.h"
#include "lookup_conv_stages.h"
#include "lookup_conv_transposed.h"

// Packed contents of at least this many ints (128 KB, about 10 µs for one thread) are compared
// by all threads: one thread compared ResNet-18-accurate's stage-4 indices (236K ints at
// density 0.05) in 0.2-0.3 ms a call; two took its layer at batch 1 from 1.49-1.58 to
// 1.37-1.45 ms.
static const size_t kParallelCompareInts = 1 << 15;

// Whether the n ints at a and b are equal.
static inline bool SameInts(const int* a, const int* b, size_t n, int threads) {
  if (threads <= 1 || n < kParallelCompareInts) return !std::memcmp(a, b, n * sizeof(int));
  bool same = true;
#pragma omp parallel for reduction(&& : same) num_threads(threads)
  for (int part = 0; part < threads; ++part) {
    const size_t begin = n * part / threads, end = n * (part + 1) / threads;
    same = same && !std::memcmp(a + begin, b + begin, (end - begin) * sizeof(int));
  }
  return same;
}

// Whether the n floats at a and b are equal bit for bit (compared as SameInts compares).
static inline bool SameFloats(const float* a, const float* b, size_t n, int threads) {
  static_assert(sizeof(float) == sizeof(int), "floats compared as ints");
  return SameInts(reinterpret_cast<const int*>(a), reinterpret_cast<const int*>(b), n, threads);
}

// Buffers of one thread working on one image.
struct Workspace {
  // Lent for each call (CallScratch), from 64-byte boundaries:
  float* split = nullptr;         // pad(X) split into phases (m x cols); its padding stays zero
  float* product = nullptr;       // D x X on the unpadded input (rows x h*w), before the split
  float* s = nullptr;             // S (rows x cols), with room for tiles reading past the end
  std::vector<float> transposed;  // the split input transposed (cols x m), for needed values
  std::vector<float> channel;     // one channel's extended plane and pooling rows, per thread
  float* all_channels = nullptr;  // every channel's extended plane (tile-major), channel_stride apart
  std::vector<float> pooled_carry;  // plan.pooled_rows: every channel's kept column maxima, per thread
  float* packed = nullptr;        // the dictionary product's packed strips of x (lent)
  std::vector<float> depth_partials;  // plan.split_depth: threads - 1 partial S (rows x cols each)
  std::vector<int> input_rows;    // plan.sparse_input: the non-zero inputs (SparseInputProduct)
  std::vector<float> input_values;
};

struct Prepared {
  Plan plan;
  std::vector<int> indptr, indices;          // the packed content the plan was built for
  std::vector<float> coefs;                  // the coefficients in plan.entry_order (when it is set) ...
  std::vector<float> coefs_source;           // ... gathered from these, in the packed order (empty: none yet)
  std::vector<float> transposed_dictionary_buffer;  // plan.transposed_product: D's listed rows transposed
  float* transposed_dictionary = nullptr;           // (TransposeDictionary), from a 64-byte boundary
  std::vector<float> strip_dictionary_buffer;  // plan.images_panel: D' strip by strip (StripDictionary)
  float* strip_dictionary = nullptr;           // from a 64-byte boundary
  int64_t ext_alloc = 0;                     // an extended plane rounded up to whole tiles
  int64_t channel_scratch = 0;               // Workspace::channel's floats per thread
  int64_t channel_stride = 0;                // floats between channels' planes in all_channels
  // What each workspace borrows for a call (lookup_conv_scratch.h): the split input and S of their
  // layout keys, the other buffers of any layer's (0 floats: none)
  std::string split_layout, s_layout;
  int64_t split_alloc = 0, product_alloc = 0, s_alloc = 0, channels_alloc = 0, packed_alloc = 0;
  std::vector<Workspace> spaces;             // one per thread running whole images, else one
  std::vector<float> batch_input;            // batched_few_outputs, batched_product: X of the whole batch ...
  float* batch_s = nullptr;                  // ... and its S, from a cache line (an image's entry reads whole lines)
  std::vector<float> batch_s_buffer;
  std::vector<float> batch_y;                // batched_few_outputs of one output a channel: Y channel-major
  std::vector<int> images;                   // a transposed dictionary in a batch: 0 .. batch-1, the
                                             // rows of its product S' = X D' (batch_input holds S')
  // plan.interleave > 1: a group's interleaved x (m x pixels x images), S (rows x cols x images)
  // and outputs (filters x ho x wo x images), from 64-byte boundaries in these buffers
  std::vector<float> group_buffers[3];
  float *group_x = nullptr, *group_s = nullptr, *group_y = nullptr;
};

// Whether prep's plan was built for input shape xs (batch, m, h, w), k dictionary vectors,
// `threads` threads and the packed content (ptr: n1 ints, idx: nnz ints), compared in full
// unless the caller knows it is the content of prep's last call (`same_content`).
static inline bool Fits(const Prepared& prep, const std::vector<int64_t>& xs, int64_t k, int threads,
                        const int* ptr, size_t n1, const int* idx, size_t nnz, bool same_content) {
  const Plan& plan = prep.plan;
  const Geometry& g = plan.geometry;
  return g.m == xs[1] && g.h == xs[2] && g.w == xs[3] && g.k == k && plan.batch == xs[0] &&
         plan.threads == threads && prep.indptr.size() == n1 && prep.indices.size() == nnz &&
         (same_content ||
          (SameInts(prep.indptr.data(), ptr, n1, threads) && SameInts(prep.indices.data(), idx, nnz, threads)));
}

// The floats of S (or of the split input) a call writes, as a key of the buffers it may borrow
// (lookup_conv_scratch.h): calls of one key write the same floats, so the others stay zero. Which are
// written follows from the path of the product (the plan's flags), the layer's window and
// padding, the geometry and S's rows; the key holds all of them and the buffer's size.
static inline std::string LayoutKey(const char* buffer, const Params& p, const Plan& plan, int64_t floats) {
  const Geometry& g = plan.geometry;
  std::ostringstream key;
  key << buffer;
  for (int64_t v : {int64_t(plan.product_into_s), int64_t(plan.transposed_product), int64_t(plan.split_depth),
                    int64_t(plan.row_product), int64_t(plan.gathered_input), int64_t(plan.product_then_split),
                    int64_t(plan.few_outputs), int64_t(plan.sparse_input), int64_t(plan.only_needed),
                    int64_t(p.kh), int64_t(p.kw), int64_t(p.sh), int64_t(p.sw), int64_t(p.ph), int64_t(p.pw), g.m,
                    g.h, g.w, g.k, g.hp, g.wp, g.ho, g.wo, g.hq, g.wq, g.ext, g.plane, g.cols,
                    static_cast<int64_t>(plan.rows.size()), floats})
    key << ' ' << v;
  return key.str();
}

// The scratch of one call (lookup_conv_scratch.h): each workspace of prep borrows its split
// input, product, S, partial sums and packed strips until this object ends, and points at them
// meanwhile.
template <class Set>
class CallScratch {
 public:
  explicit CallScratch(Prepared* prep) : prep_(prep) {
    leases_.reserve(kBuffers * prep->spaces.size());
    for (Workspace& ws : prep->spaces) {
      Lend(prep->split_layout, prep->split_alloc, &ws.split);
      Lend("product", prep->product_alloc, &ws.product);  // (written before they are read: any layer's)
      Lend(prep->s_layout, prep->s_alloc, &ws.s);
      Lend("partial sums", prep->channels_alloc, &ws.all_channels);
      Lend("packed strips", prep->packed_alloc, &ws.packed);
    }
  }
  ~CallScratch() {
    for (Workspace& ws : prep_->spaces) ws.split = ws.product = ws.s = ws.all_channels = ws.packed = nullptr;
  }

 private:
  static const int kBuffers = 5;  // lent to each workspace
  void Lend(const std::string& key, int64_t floats, float** to) {
    leases_.emplace_back(key, floats);
    *to = leases_.back().data();
  }
  Prepared* prep_;
  std::vector<ScratchLease<Set>> leases_;
};

// prep's buffers, zeroed, for its plan, layer p, `threads` threads and the kernel set I.
template <class I>
static inline void AllocateBuffers(const Params& p, int threads, Prepared* prep) {
  const Plan& plan = prep->plan;
  const Geometry& g = plan.geometry;
  const int64_t rows = plan.rows.size(), tile = TileFloats<I>();
  const int64_t past_s = 2 * std::max(tile, plan.tile_span);  // room for a tile reading past S's end
  prep->ext_alloc = std::max((g.ext + tile - 1) / tile * tile,  // (class tiles: whole tiles of theirs)
                             plan.classes ? (g.ext + plan.tile_span - 1) / plan.tile_span * plan.tile_span : 0);
  prep->channel_scratch = prep->ext_alloc + (p.pool_kh ? PoolScratchFloats(p, g) : 0);
  // Channels' planes an odd number of cache lines apart: whole tiles (1 KB on AVX-512 for ResNet's
  // 14x14 and 7x7 maps) put every channel's partial sums in the same few L1 sets, where they
  // evicted the block of S the tiles read. ResNet-18-accurate 0.05 at batch 1, one thread, its
  // three 7x7 layers' tile-major lookups: 1.34 -> 1.27-1.29 ms a call (1.86 -> 1.76 ns an entry).
  const int64_t line = 64 / sizeof(float), lines = (prep->ext_alloc + line - 1) / line;
  prep->channel_stride = (lines | 1) * line;
  const bool interleaved = plan.interleave > 1, deep = plan.batched_product || interleaved;
  prep->spaces.assign(plan.images_in_parallel ? threads : 1, Workspace());
  for (Workspace& ws : prep->spaces) {
    ws.transposed.assign(plan.only_needed && g.cols > 1 ? g.cols * g.m : 0, 0.f);
    const int64_t sharing = plan.images_in_parallel ? 1 : threads;  // threads sharing an image's workspace
    ws.channel.assign(interleaved || plan.pooled_rows ? 0 : sharing * prep->channel_scratch, 0.f);
    ws.pooled_carry.assign(plan.pooled_rows ? sharing * p.num_filter * PooledCarryFloats<I>(g) : 0, 0.f);
    ws.depth_partials.assign(plan.split_depth ? (threads - 1) * rows * g.cols : 0, 0.f);
    ws.input_rows.assign(plan.sparse_input ? g.m : 0, 0);
    ws.input_values.assign(plan.sparse_input ? g.m : 0, 0.f);
  }
  const bool split_input = plan.few_outputs || (!plan.product_then_split && !plan.product_into_s &&
                                                !plan.row_product && !plan.gathered_input);
  prep->split_alloc = split_input ? g.m * g.cols : 0;
  prep->split_layout = LayoutKey("split X", p, plan, prep->split_alloc);
  prep->product_alloc = plan.product_then_split && !plan.few_outputs ? rows * g.h * g.w : 0;
  prep->s_alloc = deep ? 0 : plan.s_floats + past_s;
  prep->s_layout = LayoutKey("S", p, plan, prep->s_alloc);
  prep->channels_alloc = plan.tile_major && !interleaved ? p.num_filter * prep->channel_stride : 0;
  prep->packed_alloc = threads * PackedFloats<I>(g.m, deep);  // for every thread
  prep->transposed_dictionary = AlignedZeros(
      &prep->transposed_dictionary_buffer,
      plan.transposed_product ? TransposedDictionaryFloats<I>(static_cast<int64_t>(plan.rows.size()), g.m) : 0);
  prep->strip_dictionary = AlignedZeros(&prep->strip_dictionary_buffer,
                                        plan.images_panel ? StripDictionaryFloats<I>(g.m, g.k) : 0);
  prep->coefs.assign(plan.entry_order.size(), 0.f);
  prep->coefs_source.clear();
  prep->batch_input.clear();
  int64_t batch_s_floats = 0;
  prep->batch_y.assign(plan.batched_few_outputs && plan.one_output ? p.num_filter * plan.batch : 0, 0.f);
  prep->images.clear();
  if (plan.batched_few_outputs && p.transposed_dictionary) {
    prep->batch_input.assign(plan.batch * g.k, 0.f);
    for (int b = 0; b < plan.batch; ++b) prep->images.push_back(b);
    batch_s_floats = plan.s_floats * plan.batch;
  } else if (plan.batched_few_outputs) {
    prep->batch_input.assign(g.m * g.cols * plan.batch, 0.f);
    batch_s_floats = plan.s_floats * plan.batch;
  } else if (plan.batched_product) {  // S's padding stays zero: the product writes inside it
    prep->batch_input.assign(g.m * g.h * g.w * plan.product_images, 0.f);
    batch_s_floats = plan.s_floats * plan.product_images + past_s;
  }
  prep->batch_s = AlignedZeros(&prep->batch_s_buffer, batch_s_floats);
  const int64_t lanes = interleaved ? plan.interleave : 0;  // nothing when not interleaved
  prep->group_x = AlignedZeros(&prep->group_buffers[0], g.m * g.h * g.w * lanes);
  prep->group_s = AlignedZeros(&prep->group_buffers[1], plan.s_floats * lanes);
  prep->group_y = AlignedZeros(&prep->group_buffers[2], p.num_filter * g.yo * g.xo * lanes);
}

#endif  // LCNN_LOOKUP_CONV_PREPARED_H_
