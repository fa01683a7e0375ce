// The lookup stage's ceiling on one core, for benchmarks/machine.py: the operator's own flat
// tile kernel (AccumulateTile of operators/lookup_conv_kernels.h, kTileVectors registers of the
// kernel set LCNN_KERNEL_ISA, compiled with its -m flags)
// over entries at random offsets of an S that fits L1, L2, or neither. Every multiply-add of a
// lookup loads its S value (an unaligned register at the entry's offset), so the loads, not the
// FMAs, set the pace. Prints useful GFLOP/s per size, L1 first; then L1 again with every offset
// a multiple of a register's lanes: a register load at any other position spans two cache lines
// (whence the operator's aligned S rows and class tiles, operators/lookup_conv_plan.h); then, for
// a kernel set with class tiles, L1 again with AccumulateClassTile over entries of kClasses column
// shifts (a 5x5 kernel's), each at a whole register plus its shift.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "lookup_conv_isa.h"
#include "lookup_conv_kernels.h"

using I = LCNN_KERNEL_ISA;
static const int kEntries = 1 << 16;    // per pass: random (offset, coefficient) pairs
static const int kEntriesPerCall = 16;  // as the tile-major lookups' row blocks give them
static const int kPasses = 200;         // the best pass counts
static const int kClasses = 5;

// S of s_floats floats, its first float on a register boundary, with room for a tile past it.
static float* MakeS(std::vector<float>* buffer, int s_floats, int tile, std::mt19937* rng) {
  buffer->resize(s_floats + 2 * tile + I::kLanes);
  for (float& v : *buffer) v = static_cast<float>((*rng)() % 1000) * 1e-3f;
  float* s = buffer->data();
  while (reinterpret_cast<uintptr_t>(s) % (I::kLanes * sizeof(float))) ++s;
  return s;
}

// Useful GFLOP/s of tiles of I::kTileVectors registers over kEntries entries into an S of
// s_floats floats, at offsets rounded down to whole registers if `aligned`.
static double Ceiling(int s_floats, bool aligned) {
  const int V = I::kTileVectors, tile = TileFloats<I>();
  std::mt19937 rng(1);
  std::vector<float> s_buffer, coef(kEntries), out(tile);
  const float* s = MakeS(&s_buffer, s_floats, tile, &rng);
  std::vector<int> off(kEntries);
  for (int j = 0; j < kEntries; ++j) {
    off[j] = static_cast<int>(rng() % s_floats), coef[j] = 1e-3f;
    if (aligned) off[j] -= off[j] % I::kLanes;
  }
  double best = 1e30;
  for (int pass = 0; pass < kPasses; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    for (int j = 0; j < kEntries; j += kEntriesPerCall)
      AccumulateTile<I, V>(s, off.data() + j, coef.data() + j, kEntriesPerCall, 0.f, j > 0, false,
                           out.data());
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (out[0] < 0) std::printf("impossible\n");  // keeps the result alive
  return 2.0 * kEntries * tile / best / 1e9;
}

// The same with S in L1 for class tiles of I::kClassTileVectors registers: each call's entries,
// kEntriesPerCall of them at offsets on register boundaries, taken by kClasses shift classes
// (class c's at that offset plus c) in turn. 0 for a set without class tiles.
template <class J>
static double ClassCeiling(int s_floats) {
  constexpr int V = J::kClassTileVectors;
  if constexpr (V == 0) {
    return 0;
  } else {
    const int tile = V * J::kLanes, calls = kEntries / kEntriesPerCall;
    std::mt19937 rng(1);
    std::vector<float> s_buffer, coef(kEntries, 1e-3f), out(tile);
    const float* s = MakeS(&s_buffer, s_floats, tile, &rng);
    std::vector<int> off(kEntries), starts(static_cast<size_t>(calls) * (kClasses + 1));
    for (int call = 0; call < calls; ++call) {
      int* run = starts.data() + call * (kClasses + 1);
      for (int c = 0; c <= kClasses; ++c) run[c] = call * kEntriesPerCall + c * kEntriesPerCall / kClasses;
      for (int c = 0; c < kClasses; ++c)
        for (int j = run[c]; j < run[c + 1]; ++j)
          off[j] = static_cast<int>(rng() % s_floats) / J::kLanes * J::kLanes + c;
    }
    double best = 1e30;
    for (int pass = 0; pass < kPasses; ++pass) {
      const auto start = std::chrono::steady_clock::now();
      for (int call = 0; call < calls; ++call)
        AccumulateClassTile<J, V, true>(s, off.data(), coef.data(), starts.data() + call * (kClasses + 1), kClasses,
                                        0.f, call > 0, false, out.data());
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    if (out[0] < 0) std::printf("impossible\n");
    return 2.0 * kEntries * tile / best / 1e9;
  }
}

int main() {
  const int sizes[] = {2 << 10, 64 << 10, 2 << 20};  // floats: 8 KB (L1), 256 KB (L2), 8 MB
  const char* names[] = {"L1 (8 KB)", "L2 (256 KB)", "L3 or memory (8 MB)"};
  for (int i = 0; i < 3; ++i) std::printf("%.1f GFLOP/s with S in %s\n", Ceiling(sizes[i], false), names[i]);
  std::printf("%.1f GFLOP/s with S in %s, offsets at whole registers\n", Ceiling(sizes[0], true), names[0]);
  if (I::kClassTileVectors > 0)
    std::printf("%.1f GFLOP/s with S in %s, class tiles of %d registers, %d classes\n", ClassCeiling<I>(sizes[0]),
                names[0], I::kClassTileVectors, kClasses);
  return 0;
}
