// The dictionary product's kernel (GemmStrip): one panel of rows of D over one strip of columns
// of x, its accumulators in registers; written once for any instruction set of lookup_conv_isa.h
// (template parameter I). lookup_conv_stages.h cuts a product into panels and strips. Only
// translation units compiled for a set include this header; they run after initialize()
// checked the CPU (library_init.cc).
#ifndef LCNN_LOOKUP_CONV_GEMM_H_
#define LCNN_LOOKUP_CONV_GEMM_H_

#include <immintrin.h>

#include <cstdint>

#include "lookup_conv_isa.h"

// Floats per strip of the dictionary product: two registers.
template <class I>
constexpr int StripFloats() { return 2 * I::kLanes; }

// Rows of D kL1WayBytes apart (or a multiple) fall into one set of L1 at every column: the size of
// one way of L1 (32 KB / 8 ways on Zen 3 and Zen 4, 48 KB / 12 on Zen 5, Intel's alike). A panel
// of more such rows than L1 has ways (kL1Ways, the fewest of those cores) evicts its own lines on
// every step, and reads D from L2: AVX-512's 12-row panels of AlexNet's fc7 and classifier
// (4096 inputs, rows 16 KB apart). With half the panel's rows read one line (kSkewFloats) further
// on, D of 516 x 4096 against one strip of 16 columns alone, Zen 4: 0.83 -> 0.63 ms
// (benchmarks/panel_sets.cc); rows 2 KB apart (6 of 12 a set) lost 3-8% skewed, and AVX2's
// 6-row panels lost 15-20%: neither is skewed.
static const int64_t kL1WayBytes = 4096;
static const int kL1Ways = 8;
static const int kSkewFloats = 16;
// Whether a panel of R rows can outnumber L1's ways in one set (only such sizes compile skewed).
template <int R>
constexpr bool OutnumbersL1Ways() { return R > kL1Ways; }
// Whether a panel of R rows of D, lda floats apart, is skewed.
template <int R>
constexpr bool SharesL1Sets(int64_t lda) {
  return OutnumbersL1Ways<R>() && lda * static_cast<int64_t>(sizeof(float)) % kL1WayBytes == 0;
}

// What GemmStrip fetches ahead of its strip b, on every row c: row c + rows into L1 (past b's
// last row, the rows of next, the strip after b), and row c of far (if set) into L2. Strips
// read in place walk down x by whole rows, which the hardware prefetchers do not follow (loads of
// x were 40-70% of the product's time); DictionaryProduct says how far ahead it looks.
struct StripAhead {
  const float* next;
  int rows;
  const float* far;
};

// out (R x width, rows ldo apart) = [out +] the R dictionary rows a[r][0 .. depth) x b (depth rows
// of one strip, ldb apart), R <= kPanelRows, over V of the strip's two registers: the R x V accumulators
// stay in registers while b streams by once. V = 1 for a last strip of at most one register's
// columns (ResNet-18's 7x7 maps: 49 = 3 x 16 + 1), which then costs about half a whole strip.
// width < V registers: only the first `width` columns are written. Not inlined: a strip is
// hundreds of FMAs, and as a function of its own its registers are checked by
// tests/test_kernel_sets.py.
// Strided: row r is a[0] + r * lda (a panel of consecutive rows of D). Twelve row pointers exceed
// x86's general registers, and GCC reloaded some of them from the stack on every step: five
// product shapes of AlexNet and ResNet-18 alone, warm, one thread, ran 2-5% faster strided
// (AVX-512). Rows are read from one base pointer every kRowsPerBase rows, the base's row and the
// next two at the index register lda and its double (the addressing's scale): so a step's
// addresses take one add a base. From one base and a running index they took a chain of 11 adds
// a step, integer work on the ports of the multiply-adds; a 12-row, 2-register panel over a
// strip in L1 ran 3-5% faster so, over strips in L2 (64 rows) 11% (Intel AVX-512).
// Skewed: rows [R / 2, R) take their step c at depth c + kSkewFloats (wrapping around; depth >=
// kSkewFloats), one cache line further on than the others, for rows of D that share L1 sets
// (SharesL1Sets): the sum is the same, in another order.
static constexpr int kRowsPerBase = 3;
template <class I, int R, int V, bool Strided, bool Skewed>
__attribute__((noinline)) static void GemmStrip(const float* const* a, int64_t lda, int depth, const float* b,
                                                int64_t ldb, StripAhead ahead, bool accumulate, int64_t width,
                                                float* out, int64_t ldo) {
  using Vec = typename I::Vec;
  const int L = I::kLanes;
  // Every loop over r and v fully unrolled: otherwise GCC keeps acc in memory (as in AccumulateTile).
  Vec acc[R][V];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[r][v] = I::Zero();
  }
  constexpr bool kBased = Strided && !Skewed;
  constexpr int B = (R + kRowsPerBase - 1) / kRowsPerBase;
  const char* base[B];  // kBased: base i at row kRowsPerBase * i, at step c
  int64_t row_bytes = lda * static_cast<int64_t>(sizeof(float));
  if constexpr (kBased) {
#pragma GCC unroll 4
    for (int i = 0; i < B; ++i) base[i] = reinterpret_cast<const char*>(a[0] + kRowsPerBase * i * lda);
    asm("" : "+r"(row_bytes));  // (a register: the index of the addresses)
  }
  for (int c = 0; c < depth; ++c) {
    const int row = c + ahead.rows;
    const float* future = row < depth ? b + row * ldb : ahead.next + (row - depth) * ldb;
    _mm_prefetch(reinterpret_cast<const char*>(future), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(future + StripFloats<I>() - 1), _MM_HINT_T0);
    if (ahead.far) {
      _mm_prefetch(reinterpret_cast<const char*>(ahead.far + c * ldb), _MM_HINT_T2);
      _mm_prefetch(reinterpret_cast<const char*>(ahead.far + c * ldb + StripFloats<I>() - 1), _MM_HINT_T2);
    }
    constexpr int H = Skewed ? R / 2 : R;  // rows at step c
    Vec x[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) x[v] = I::Load(b + c * ldb + v * L);
#pragma GCC unroll 16
    for (int r = 0; r < H; ++r) {
      const Vec w = I::Broadcast(kBased  ? reinterpret_cast<const float*>(base[r / kRowsPerBase] +
                                                                          r % kRowsPerBase * row_bytes)
                                 : Strided ? a[0] + r * lda + c
                                           : a[r] + c);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) acc[r][v] = I::Fma(w, x[v], acc[r][v]);
    }
    if constexpr (kBased) {
#pragma GCC unroll 4
      for (int i = 0; i < B; ++i) {
        base[i] += sizeof(float);
        asm("" : "+r"(base[i]));  // (each base its own register, stepped on its own)
      }
    }
    if constexpr (Skewed) {
      const int e = c + kSkewFloats < depth ? c + kSkewFloats : c + kSkewFloats - depth;
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) x[v] = I::Load(b + e * ldb + v * L);
#pragma GCC unroll 16
      for (int r = H; r < R; ++r) {
        const Vec w = I::Broadcast(Strided ? a[0] + r * lda + e : a[r] + e);
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) acc[r][v] = I::Fma(w, x[v], acc[r][v]);
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) {
      float* o = out + r * ldo + v * L;
      if (width >= (v + 1) * L) {
        if (accumulate) acc[r][v] = I::Add(acc[r][v], I::Load(o));
        I::Store(o, acc[r][v]);
      } else if (width > v * L) {  // the last columns, under a mask: nothing past them is read or written
        const typename I::Mask first = I::FirstLanes(static_cast<int>(width - v * L));
        if (accumulate) acc[r][v] = I::Add(acc[r][v], I::LoadFirst(o, first));
        I::StoreFirst(o, first, acc[r][v]);
      }
    }
  }
}

#endif  // LCNN_LOOKUP_CONV_GEMM_H_
