// The vector instruction sets the kernels of lcnn_lookup_conv are compiled for. The kernels
// (lookup_conv_kernels.h, lookup_conv_stages.h) are written once against the interface below;
// lookup_conv.cc is compiled once per set, each object with its own -m flags (Makefile), and
// library_init.cc picks one when the library loads.
//
//   Avx2      8 floats per register, AVX2 + FMA          (every CPU the library runs on)
//   Avx512    16 floats per register, AVX-512F            (chosen where the CPU has it)
//   Avx2Pair  16 floats as a pair of AVX2 registers: the 16-lane kernels' logic (tiles,
//             masked tails, gathers) on any AVX2 host, so the parity tests check it on
//             machines without AVX-512 too. Slower than Avx2; never chosen by default.
//
// A set's interface: Vec (a register of kLanes floats), Mask (which lanes a tail uses), and
//   Zero, Set(v), Broadcast(p), Load(p), Store(p, v), Fma(a, b, c) = a * b + c, Add, Max,
//   FirstLanes(n): lanes [0, n) (n <= 0: none, n >= kLanes: all),
//   LoadFirst(p, mask) / StoreFirst(p, mask, v): only those lanes are read or written,
//   Gather(base, idx, shift): lane l = base[idx[l] + shift] for kLanes indices,
//   GatherOrZero(base, idx): lane l = base[idx[l]] where idx[l] >= 0, else 0 (nothing read),
//   Sum(v): the sum of the lanes,
//   Keep(mask, v): v's lanes in mask, -inf in the others,
//   EvenLanes(a, b) / OddLanes(a, b): the even / odd lanes of a followed by b,
//   ShiftIn<N>(lo, hi): lanes [N, N + kLanes) of lo followed by hi (0 <= N < kLanes),
//   Transpose(r): the kLanes x kLanes floats in registers r[0 .. kLanes) transposed in place
//   (lane j of r[i] becomes lane i of r[j]),
//   kClassTileVectors: registers per class tile of the lookup stage (lookup_conv_plan.h; 0: the
//   set takes none),
//   kTileVectors: registers of accumulators per flat output tile of the lookup stage,
//   kRowTileVectors: at most as many per row tile (rows x registers per row),
//   kPanelRows: rows of D per panel of the dictionary product (2 registers of accumulators each),
//   kMatVecRows: rows of D a one-column product (a matrix-vector product) reads side by side,
//   kSparseInputVectors: registers of accumulators across a row of a transposed dictionary
//   (SparseInputProduct, lookup_conv_sparse_input.h),
//   kImagesPanelRows: the most images of a batch whose transposed dictionary's product takes them
//   all in one panel, one register of accumulators each (ImagesPanelProduct there; 0: none),
//   kTransposedPixels: pixels of a row per kernel of the transposed product (lookup_conv_transposed.h;
//   0: the set takes none).
// Only translation units compiled with the set's flags may include this header.
#ifndef LCNN_LOOKUP_CONV_ISA_H_
#define LCNN_LOOKUP_CONV_ISA_H_

#include <immintrin.h>

struct Avx2 {
  using Vec = __m256;
  using Mask = __m256i;
  static constexpr int kLanes = 8;
  // 12 of the 16 registers: each accumulator is a chain of FMAs (5 cycles each on the CPUs
  // measured), and 2 FMAs a cycle need 10 chains in flight; 8 left the lookup stage latency-bound.
  static constexpr int kTileVectors = 12;
  // Row tiles of two 56-float rows: 14 accumulators, one broadcast, the loads folded into the FMAs
  // (15 registers; tests/test_kernel_sets.py checks that none spills).
  static constexpr int kRowTileVectors = 14;
  // Rows of D per panel of the dictionary product: 12 accumulators + 2 loads of x + 1 broadcast.
  static constexpr int kPanelRows = 6;
  // 8 accumulators + x + a load. D comes from memory, and 8 rows read side by side keep more
  // line fetches in flight than OpenBLAS's matrix-vector product did (lookup_conv_stages.h).
  static constexpr int kMatVecRows = 8;
  // 8 of the 16 registers (256 bytes of a row a pass); 12 measured the same (lookup_conv_sparse_input.h).
  static constexpr int kSparseInputVectors = 8;
  // None: a register is half a cache line, and 12 images on one register were slower than the
  // general product's panels (lookup_conv_sparse_input.h).
  static constexpr int kImagesPanelRows = 0;
  static constexpr int kTransposedPixels = 0;  // (16 registers: 4 x 7 accumulators do not fit)
  // None: with S in L1, loads at whole registers were only 8% faster than at any offset on AVX2
  // (benchmarks/lookup_ceiling.cc, Zen 5), against 1.7x on AVX-512; class tiles not tried.
  static constexpr int kClassTileVectors = 0;
  static Vec Zero() { return _mm256_setzero_ps(); }
  static Vec Set(float v) { return _mm256_set1_ps(v); }
  static Vec Broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static Vec Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
  static Vec Fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static Vec Add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
  static Vec Max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
  static Mask FirstLanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Vec LoadFirst(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void StoreFirst(float* p, Mask m, Vec v) { _mm256_maskstore_ps(p, m, v); }
  static Vec Gather(const float* base, const int* idx, int shift) {
    const __m256i i = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx)),
                                       _mm256_set1_epi32(shift));
    return _mm256_i32gather_ps(base, i, 4);
  }
  static Vec GatherOrZero(const float* base, const int* idx) {
    const __m256i i = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx));
    const __m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(i, _mm256_set1_epi32(-1)));
    return _mm256_mask_i32gather_ps(Zero(), base, i, valid, 4);
  }
  static float Sum(Vec v) {
    const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)));
  }
  static Vec Keep(Mask m, Vec v) {
    return _mm256_blendv_ps(Set(-__builtin_inff()), v, _mm256_castsi256_ps(m));
  }
  // (a0 a2 a4 a6 b0 b2 b4 b6) and (a1 a3 a5 a7 b1 b3 b5 b7)
  static Vec EvenLanes(Vec a, Vec b) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
  }
  static Vec OddLanes(Vec a, Vec b) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
  }
  // the middle 8 of lo's and hi's 16 lanes, then a byte shift within each 128-bit half
  template <int N>
  static Vec ShiftIn(Vec lo, Vec hi) {  // (N = 0: the byte shift by 0 gives lo)
    const __m256i mid = _mm256_castps_si256(_mm256_permute2f128_ps(lo, hi, 0x21));
    if constexpr (N < 4) return _mm256_castsi256_ps(_mm256_alignr_epi8(mid, _mm256_castps_si256(lo), 4 * N));
    else if constexpr (N == 4) return _mm256_castsi256_ps(mid);
    else return _mm256_castsi256_ps(_mm256_alignr_epi8(_mm256_castps_si256(hi), mid, 4 * (N - 4)));
  }
  // pairs of rows interleaved, then 4x4 blocks within each 128-bit half, then the halves swapped
  static void Transpose(Vec* r) {
    Vec t[8], u[8];
    for (int k = 0; k < 4; ++k)
      t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]), t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    for (int k = 0; k < 2; ++k) {  // u[4k + c], half h: column 4h + c of rows 4k .. 4k + 3
      u[4 * k] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
      u[4 * k + 1] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
      u[4 * k + 2] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
      u[4 * k + 3] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
    }
    for (int c = 0; c < 4; ++c)
      r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20), r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
};

#ifdef __AVX512F__
struct Avx512 {
  using Vec = __m512;
  using Mask = __mmask16;
  static constexpr int kLanes = 16;
  // 16 of the 32 registers (256 floats a tile): on Zen 5 with S in L1, tiles of 8, 12 and 16
  // registers did 95, 102 and 104 useful GFLOP/s (benchmarks/lookup_ceiling.cc); 24 registers
  // are more than the kernels' unrolled loops keep in registers.
  static constexpr int kTileVectors = 16;
  static constexpr int kRowTileVectors = 16;
  // 24 accumulators + 2 loads of x + 1 broadcast: on Zen 5, ResNet-18's products alone were
  // 5-25% faster than with 6 rows (fewer passes over each strip of x).
  static constexpr int kPanelRows = 12;
  static constexpr int kMatVecRows = 8;  // as Avx2's
  // 16 of the 32 registers: 1 KB of a row a pass; 8 were 10-15% slower (lookup_conv_sparse_input.h).
  static constexpr int kSparseInputVectors = 16;
  // 16 accumulators + a load + a broadcast: a batch of 16 in one panel (lookup_conv_sparse_input.h).
  static constexpr int kImagesPanelRows = 16;
  static constexpr int kTransposedPixels = 7;
  // V + 1 accumulators and a broadcast of the 32 registers, two spare: alone in C++ with S in L1,
  // 5 classes, 16 entries a tile, tiles of 14, 22 and 28 registers did 133, 133 and 141 useful
  // GFLOP/s (30: 137).
  static constexpr int kClassTileVectors = 28;
  static Vec Zero() { return _mm512_setzero_ps(); }
  static Vec Set(float v) { return _mm512_set1_ps(v); }
  static Vec Broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static Vec Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
  static Vec Fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static Vec Add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
  static Vec Max(Vec a, Vec b) { return _mm512_max_ps(a, b); }
  static Mask FirstLanes(int n) {
    return static_cast<Mask>(n <= 0 ? 0u : n >= kLanes ? 0xFFFFu : (1u << n) - 1u);
  }
  // masked-off lanes are neither read nor written (no fault past the end of a buffer)
  static Vec LoadFirst(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void StoreFirst(float* p, Mask m, Vec v) { _mm512_mask_storeu_ps(p, m, v); }
  static Vec Gather(const float* base, const int* idx, int shift) {
    const __m512i i = _mm512_add_epi32(_mm512_loadu_si512(idx), _mm512_set1_epi32(shift));
    return _mm512_i32gather_ps(i, base, 4);
  }
  static Vec GatherOrZero(const float* base, const int* idx) {
    const __m512i i = _mm512_loadu_si512(idx);
    return _mm512_mask_i32gather_ps(Zero(), _mm512_cmpge_epi32_mask(i, _mm512_setzero_si512()), i, base, 4);
  }
  static float Sum(Vec v) { return _mm512_reduce_add_ps(v); }
  static Vec Keep(Mask m, Vec v) { return _mm512_mask_mov_ps(Set(-__builtin_inff()), m, v); }
  static Vec EvenLanes(Vec a, Vec b) {
    return _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b);
  }
  static Vec OddLanes(Vec a, Vec b) {
    return _mm512_permutex2var_ps(a, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b);
  }
  template <int N>
  static Vec ShiftIn(Vec lo, Vec hi) {
    const __m512i l = _mm512_castps_si512(lo), h = _mm512_castps_si512(hi);
    return _mm512_castsi512_ps(_mm512_mask_alignr_epi32(l, 0xFFFF, h, l, N));  // (the unmasked form warns in GCC 12)
  }
  // pairs of rows interleaved, then 4x4 blocks within each 128-bit lane, then the 4x4 blocks of
  // 128-bit lanes
  static void Transpose(Vec* r) {
    Vec t[16], u[16];
    for (int k = 0; k < 8; ++k)
      t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]), t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    for (int k = 0; k < 4; ++k) {  // u[4k + c], 128-bit lane l: column 4l + c of rows 4k .. 4k + 3
      u[4 * k] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
      u[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
      u[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
      u[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
    }
    for (int c = 0; c < 4; ++c) {  // r[4l + c]: lane l of u[c], u[4 + c], u[8 + c], u[12 + c]
      const Vec x0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), x1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
      const Vec x2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44), x3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
      r[c] = _mm512_shuffle_f32x4(x0, x2, 0x88), r[4 + c] = _mm512_shuffle_f32x4(x0, x2, 0xDD);
      r[8 + c] = _mm512_shuffle_f32x4(x1, x3, 0x88), r[12 + c] = _mm512_shuffle_f32x4(x1, x3, 0xDD);
    }
  }
};
#endif

struct Avx2Pair {
  struct Vec { Avx2::Vec lo, hi; };
  struct Mask { Avx2::Mask lo, hi; };
  static constexpr int kLanes = 16;
  // Avx512's tiles, those of the set it stands for (the accumulators spill: twice the registers)
  static constexpr int kTileVectors = 16;
  static constexpr int kRowTileVectors = 16;
  // Panels as Avx2's: their logic is the same for any number of rows, and 12 rows of pairs spill.
  static constexpr int kPanelRows = 6;
  static constexpr int kMatVecRows = 4;  // 8 registers of accumulators, as Avx2's 8 rows
  static constexpr int kSparseInputVectors = 4;  // 8 registers, as Avx2's
  static constexpr int kImagesPanelRows = 16;  // Avx512's, whose logic this set stands for (they spill)
  static constexpr int kTransposedPixels = 7;  // Avx512's logic, checked on AVX2 hosts
  static constexpr int kClassTileVectors = 28;  // Avx512's logic, checked on AVX2 hosts
  static Vec Zero() { return {Avx2::Zero(), Avx2::Zero()}; }
  static Vec Set(float v) { return {Avx2::Set(v), Avx2::Set(v)}; }
  static Vec Broadcast(const float* p) { return {Avx2::Broadcast(p), Avx2::Broadcast(p)}; }
  static Vec Load(const float* p) { return {Avx2::Load(p), Avx2::Load(p + 8)}; }
  static void Store(float* p, Vec v) { Avx2::Store(p, v.lo), Avx2::Store(p + 8, v.hi); }
  static Vec Fma(Vec a, Vec b, Vec c) { return {Avx2::Fma(a.lo, b.lo, c.lo), Avx2::Fma(a.hi, b.hi, c.hi)}; }
  static Vec Add(Vec a, Vec b) { return {Avx2::Add(a.lo, b.lo), Avx2::Add(a.hi, b.hi)}; }
  static Vec Max(Vec a, Vec b) { return {Avx2::Max(a.lo, b.lo), Avx2::Max(a.hi, b.hi)}; }
  static Mask FirstLanes(int n) { return {Avx2::FirstLanes(n), Avx2::FirstLanes(n - 8)}; }
  static Vec LoadFirst(const float* p, Mask m) { return {Avx2::LoadFirst(p, m.lo), Avx2::LoadFirst(p + 8, m.hi)}; }
  static void StoreFirst(float* p, Mask m, Vec v) {
    Avx2::StoreFirst(p, m.lo, v.lo);
    Avx2::StoreFirst(p + 8, m.hi, v.hi);
  }
  static Vec Gather(const float* base, const int* idx, int shift) {
    return {Avx2::Gather(base, idx, shift), Avx2::Gather(base, idx + 8, shift)};
  }
  static Vec GatherOrZero(const float* base, const int* idx) {
    return {Avx2::GatherOrZero(base, idx), Avx2::GatherOrZero(base, idx + 8)};
  }
  static float Sum(Vec v) { return Avx2::Sum(Avx2::Add(v.lo, v.hi)); }
  static Vec Keep(Mask m, Vec v) { return {Avx2::Keep(m.lo, v.lo), Avx2::Keep(m.hi, v.hi)}; }
  static Vec EvenLanes(Vec a, Vec b) { return {Avx2::EvenLanes(a.lo, a.hi), Avx2::EvenLanes(b.lo, b.hi)}; }
  static Vec OddLanes(Vec a, Vec b) { return {Avx2::OddLanes(a.lo, a.hi), Avx2::OddLanes(b.lo, b.hi)}; }
  template <int N>
  static Vec ShiftIn(Vec lo, Vec hi) {
    alignas(32) float lanes[2 * kLanes];
    Store(lanes, lo), Store(lanes + kLanes, hi);
    return Load(lanes + N);
  }
  static void Transpose(Vec* r) {  // (through memory: this set checks logic, not speed)
    alignas(32) float in[kLanes][kLanes], out[kLanes][kLanes];
    for (int i = 0; i < kLanes; ++i) Store(in[i], r[i]);
    for (int i = 0; i < kLanes; ++i)
      for (int j = 0; j < kLanes; ++j) out[j][i] = in[i][j];
    for (int i = 0; i < kLanes; ++i) r[i] = Load(out[i]);
  }
};

#endif  // LCNN_LOOKUP_CONV_ISA_H_
