// The thresholds by which lookup_conv_plan.h's BuildPlan chooses each layer's path and blocking,
// each a named constant with why its value (and, where it was measured, what was measured).
// Nothing else decides a path: the kernels read the Plan.
#ifndef LCNN_LOOKUP_CONV_THRESHOLDS_H_
#define LCNN_LOOKUP_CONV_THRESHOLDS_H_

#include <cstdint>

// S rows for all dictionary vectors (no compaction) unless P uses at most 3/4 of them: a
// compact S saves work only when many vectors are unused.
static const int kCompactNumerator = 3, kCompactDenominator = 4;
// Compute only the S values P reads (one dot product each) when they are at most a quarter of
// S: a dot product costs about four times a value of the blocked product.
static const int kNeededDivisor = 4;
// Strided layers: the product on the unpadded input, then S split into padded stride phases,
// unless splitting X first saves more: that product covers the padding too (ResNet-18's
// stride-2 layer on 14x14 maps: 288 columns for 196 pixels) but splits m rows instead of k.
// A float split costs about 16 multiply-adds of the product (measured alone on AVX2: 0.4-0.5
// ns a float against 30-36 multiply-adds a ns).
static const int64_t kSplitFloatMultiplyAdds = 16;
// Strided layers on an input of at most 4 channels (an image's colours: a network's first layer):
// S row by row, each input row's products split into their phases at once (ProductSplitRows).
// With so few channels the product is a few multiply-adds a value and its time is the passes over
// memory: AlexNet's conv1 at batch 16 (m = k = 3, stride 4) wrote an image's product (600 KB) and
// read it back to split it, more than its 1 MB of L2 with S.
static const int64_t kRowProductMaxChannels = 4;
// Stride-1 layers on maps of at most 14 columns a row, with at least one block of 64
// dictionary rows, and D (its listed rows) of at most 2 MB: the product transposed
// (lookup_conv_transposed.h), 7 pixels of a row against 64 dictionary rows in registers, instead
// of strips of 32 columns that leave lanes empty and cross S's rows. D is transposed on every
// call, block by block right before the block's strips. Each product in lcnn-predict, one
// thread, batch 1, Intel AVX-512 host, 1000 calls (µs, with the transpose): ResNet-18-fast
// 0.03's 14x14 (k = 64, m = 256) 59.5 -> 45.7 and 7x7 (k = 128, m = 512) 72-74 -> 61.7;
// ResNet-18-accurate 0.05's 14x14 (k = 512, D 512 KB) 508 -> 422; AlexNet-accurate's 13x13
// conv3-conv5 (k = 500) 300, 393, 499 -> 220, 293, 440. ResNet-18-accurate's 7x7 (k = 1024, D
// 2 MB) lost with all of D transposed first (658 -> 686: D^T then came back from L3), and gains
// block by block (735-740 -> 638-646 µs a call, two threads 379-387 -> 334-337, medians of 600
// calls in lcnn-predict builds with a clock around each stage). Larger D were not measured.
// Wider maps fill the strips; fewer rows than a block leave its lanes empty (AlexNet-fast's
// 13x13 layers: 30 rows).
static const int64_t kTransposedProductMaxWidth = 14;
static const int64_t kTransposedProductMinRows = 64;
static const int64_t kTransposedProductMaxDictionaryBytes = 2 << 20;
// Threads sharing one image split a stride-1 product of a small map (columns at most this wide)
// by its depth where x is the larger operand (no more dictionary rows than pixels): each thread
// the input channels its core most likely wrote (the previous layer's lookups split channels),
// into a partial S of its own, added after. Split by columns, each thread read half of x, half of
// that from the other core's cache. AlexNet's 13x13 products (k = 30) alone in C++, two threads,
// x rewritten half by each thread before every call (medians, µs): m = 384 36.9-37.6 -> 17.6-19.3,
// 256 25.4-25.7 -> 13.4-14.2, 192 18.8-19.1 -> 11.5-11.8. AlexNet-fast at two threads, batch 1,
// lcnn-predict, alternating processes: 0.907-0.970 of the time (median 0.96, 10 rounds); with the
// AVX2 kernels 0.995-1.010 (6). Wider maps were not tried: the networks' next widths (27, 28)
// have more strips than one chunk holds, which DictionaryProduct also asks of a split by depth.
static const int64_t kSplitDepthMaxWidth = 14;
// Stride-1 layers in a batch whose images have at most this many pixels: one product over the
// whole batch (every image's x side by side, every image's S in one buffer), so that D, read
// once per pass over the columns, is read once a call instead of once an image, and a last
// strip's unused lanes are spent once, not once an image. Measured on AVX-512 at batch 16,
// minima of 30 calls, 3-4 pairs of alternating processes: ResNet-18-accurate's 7x7 layer (49
// pixels, two strips of 32, D 2 MB) 13.0-14.2 -> 10.9-13.9 ms at one thread, 7.3-8.5 -> 6.3-7.6
// at two; ResNet-18-fast's 1.87-2.72 -> 1.64-1.67 ms. Larger images lose what S no longer in L2
// costs the lookups (medians): AlexNet's 13x13 layers (169 pixels) no change, ResNet-18-
// accurate's 14x14 (196) 9.9-10.2 -> 10.3-11.2 ms.
static const int64_t kBatchedProductMaxPixels = 64;
// ... over groups of images whose S takes at most 16 MB (ResNet-18-accurate's 7x7 layers: 42
// images of 384 KB), so that large batches do not multiply the buffer.
static const int64_t kBatchedProductMaxBytes = 16 << 20;
// Such a layer in a batch of at least one register's lanes of images, without pooling, whose S
// for a register's images fits the same 16 MB: the images are interleaved instead. S holds, for
// each row and padded pixel, the value of every image of a group side by side (one register),
// and a row tile accumulates one register per output pixel: every S load is one aligned cache
// line and every lane is an output (an image's 7x7 plane in flat tiles: 64 lanes for 49 outputs,
// loads across lines). Groups of lanes images; a last group with fewer computes unused lanes.
// ResNet-18's 7x7 lookup stage alone in C++ at batch 16 on Zen 5, tile-major in row blocks: k =
// 1024, 460 entries a channel, 44 -> 93 useful GFLOP/s; k = 128, 58 entries, 53 -> 110. The
// layers in the operator at batch 16, one thread, medians of 2-3 pairs of processes: accurate
// (k = 1024) 13.6-15.6 -> 9.4-12.1 ms, fast (k = 128) 1.56-1.67 -> 1.32-1.35 ms; two threads,
// accurate, 8.1-8.5 -> 5.6-6.3 ms; AVX2 kernels (8 images a group), 18.5-20.8 -> 17.3-18.0 ms.
// Larger maps gained nothing (ResNet-18-accurate alone at batch 16, medians of 2-3 pairs: 14x14
// 11.2-13.5 against 12.5-13.5 ms, 28x28 12.0-15.1 against 10.8-11.1 ms): the same small maps.
// Accumulate output tiles position by position over all channels (each tile's S rows then
// stay in L2) when S is larger than 64K floats (256 KB: half of a Zen 3 core's L2, a quarter
// of a Zen 5 core's) and channels have 16+ entries on average (fewer: each channel reads
// little of S).
static const int64_t kTileMajorMinFloats = 64 << 10;
static const int kTileMajorMinEntries = 16;
// ... and from 24K floats (96 KB: twice this Intel host's and Zen 5's L1) where an output plane
// spans several flat tiles: channel by channel each entry's tile then reads its part of S from
// L2 again, where tile by tile S's rows of one tile stay in L1. AlexNet-fast's conv2 (27x27, 5x5,
// k = 30: S 115 KB, 4 tiles) alone, one thread, Intel Xeon: 372-381 -> 305-320 us at batch 1,
// 3966 -> 3384 at batch 16. A plane of one tile reads the same S either way: ResNet-18-fast's
// stride-2 layers (S 128 and 230 KB, one tile) gained nothing alone, and its whole network at
// batch 1 took 1.09 of the time with them tile-major.
static const int64_t kTileMajorSeveralTilesMinFloats = 24 << 10;
// Tile by tile, the S values one output tile reads span, per S row, its stride phases' segments
// of (tile + largest tap shift) floats (the tile: as much of the extended plane as it covers).
// When all rows' segments exceed half the core's L1 data cache (core_caches.h), or 16 KB where
// the CPU reports none, the rows are taken in blocks whose segments fit, and each channel's tile
// is accumulated block by block (partial sums stored in between): every entry then reads S from
// L1 instead of L2. A channel's entries are split into consecutive runs, one per block: in row
// order (the packer's) each run reads its block's rows only; in any other order the result is
// the same and only the locality is lost. Measured: 16 KB on Zen 3 (a 32 KB L1; on Zen 5, with
// 48 KB, 24 KB measured the same). On the Intel Xeon (48 KB), half of L1 against 16 KB, with the
// tile's segment counted as what it covers (ResNet-18-accurate's 7x7 layer: 84 floats a row, not
// the 276 of a whole flat tile; 28 blocks -> 15), lcnn-predict, alternating processes, medians
// of 4 rounds: ResNet-18-accurate 0.05 at batch 1 0.962 of the time at one thread and 0.969 at
// two, at batch 16 0.983 (3). (The segment counted alone: 0.992.) AlexNet's and ResNet-18-fast's
// plans do not change (one block, or not tile-major).
static const int64_t kTileFootprintMinBytes = 16 << 10;
static const int kTileFootprintL1Divisor = 2;
// ... but no more blocks than leave a channel 16 entries in each on average: every block costs a
// load and a store of the tile's partial sums (AlexNet's conv1, 30 entries a channel in 3 blocks,
// was 5-10% slower blocked).
static const int kMinBlockEntries = 16;
// Class tiles (as wide as the kernel set's registers allow, 28 on AVX-512) take half as many
// registers where one row block's S segments (RowBlockingOf: rows a block x a tile's segment of
// a row) would span more than 48 KB, the L1 data cache of an Intel or Zen 5 core: the blocks
// cannot be more (kMinBlockEntries), and each entry then reads its segment from L2. Narrower
// tiles read shorter segments, at the cost of the taps' rows above and below each tile read
// more often. ResNet-18-accurate 0.05's lookup stages alone, one thread, batch 1, Intel Xeon,
// three runs of 420 calls each way (µs a call): 56x56 (99 KB a block) 413-437 -> 356-381, and
// the layer 856-887 -> 784-836; 28x28 (76 KB) 337-350 -> 325-343; at 0.03 56x56 297-315 ->
// 273-280, 28x28 243-258 -> 229-236; AlexNet-fast (its conv1, 111 KB a block) 0.974-0.979 of the
// time in lcnn-predict at batch 1 and 16. Halved always, AlexNet-accurate's conv2 (27x27, 5x5,
// 38 KB a block) was 10-20% slower instead (2360-2442 -> 2658-2980 µs), tiles of 10 or 12
// registers slower than 14 on the 56x56 layer, and 16 or 20 no faster.
static const int64_t kClassBlockSpanBytes = 48 << 10;
// A fully connected layer over a batch (OneOutputImages) reads one line of S (the batch's images
// side by side) an entry, anywhere in S: AlexNet-accurate's fc6 has 2.4 MB of S at batch 16
// and 906 thousand entries. S's rows are taken in blocks of at most 512 KB, each channel's sum
// accumulated block by block, so that a block stays in L2 while every channel reads it. Its
// lookups in lcnn-predict, one thread, Intel Xeon (2 MB of L2), medians of 21 calls: one block
// 4.7-4.9 ms; blocks of 256 KB (10) 2.3-2.6, 512 KB (5) 1.7-1.9 (1.9 ms in the layer alone),
// 1 MB (3) 2.1-2.4. A block of 512 KB with the partial sums (256 KB) fills a Zen 3 core's L2,
// as 1 MB fills this one: still twice as fast as none.
static const int64_t kGatherBlockBytes = 512 << 10;

// A fused 3x3 / stride-2 pooling is taken in registers (PooledRows) over output rows of at least
// 4 registers: a pooled row accumulates two rows at a time, and fewer than 8 accumulators leave
// its multiply-adds waiting on each other's latency, where flat tiles keep 16 (AlexNet's conv2,
// 27 columns, 2 registers on AVX-512).
static const int kPooledRowMinRegisters = 4;

// Class tiles: on Zen 5 the lookup stage's loads of S are its limit, and a load at a position
// that is not a multiple of 16 floats spans two cache lines. The tile kernel alone with S in L1
// (16 registers, 64 entries): 98-104 useful GFLOP/s at arbitrary offsets, 163-172 at aligned
// ones. So a tile-major layer's S rows may start on register boundaries (each phase row rounded
// up to whole registers), its entries grouped by tap column shift ("class": the only
// misalignment left), and the classes summed with aligned loads, one shifted into the next
// (AccumulateClassTile). Alone in C++ with S in L1, 16 entries a tile, tiles of 28 registers
// against the unaligned 16: 3 classes 111 -> 146 useful GFLOP/s, 5 classes 99 -> 141; 64
// entries, 119 -> 163 and 108 -> 164; at 4 entries no steady difference (unaligned 78-83, class
// tiles of 14-30 registers 70-107). Each layer alone in the operator, fastest of 20-300 calls
// alternating with the unaligned plan in one process (Zen 5, one thread), batch 16 and 1:
// AlexNet-accurate's conv2 (5x5, 5 classes) 0.90 and 0.93 of the time; AlexNet's conv1 (3
// classes at stride 4) 0.80-0.91 and 0.81-0.91; AlexNet-accurate's 13x13 layers (one tile)
// 0.93-0.99 and 0.95-1.04; ResNet-18-accurate 0.05's stride-1 layers on 56, 28 and 14 wide maps
// 0.89-0.92 and 0.89-0.99, its stride-2 ones 0.98 and 0.99-1.01. Tiles of 14 and 18 registers
// made conv2 1.16 and 1.05 times as slow as 28: each row block's partial sums are loaded and
// stored once a tile.
// Only when the rounded rows compute at most 1/8 more lanes (ResNet's 7x7 maps: 9 -> 16).
static const int kClassRoundingNumerator = 9, kClassRoundingDenominator = 8;

// The lookup stage's channels at several threads: one range of channels a thread, balanced by
// each channel's entries plus this many (a channel's tiles also load or set, and store, their
// accumulators: about the instructions of two entries; counted, not tuned). Ranges, not
// libgomp's dynamic schedule: each unit taken from its shared counter is a locked add on a line
// both threads write, which also waits for every store before it.
static const int kChannelFixedEntries = 2;

#endif  // LCNN_LOOKUP_CONV_THRESHOLDS_H_
