// One core's single-precision FMA throughput, for benchmarks/machine.py, at the width of the
// operator's kernel set (LCNN_KERNEL_ISA: a set of operators/lookup_conv_isa.h, compiled with its
// -m flags): twelve independent FMA chains per iteration, fully unrolled so that they stay in
// registers (enough in flight to cover the FMA latency on two pipes); prints GFLOP/s.
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "lookup_conv_isa.h"

using I = LCNN_KERNEL_ISA;
static const int kChains = 12;

int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 50000000L;
  I::Vec x[kChains];
#pragma GCC unroll 12
  for (int i = 0; i < kChains; ++i) x[i] = I::Set(0.10f + 0.01f * i);  // distinct: not merged
  const I::Vec a = I::Set(0.999999f), b = I::Set(1e-7f);
  const auto start = std::chrono::steady_clock::now();
  for (long it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) x[i] = I::Fma(x[i], a, b);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  I::Vec sum = x[0];
#pragma GCC unroll 12
  for (int i = 1; i < kChains; ++i) sum = I::Add(sum, x[i]);
  std::printf("%.3f GFLOP/s (checksum %g)\n", iterations * kChains * I::kLanes * 2.0 / seconds / 1e9, I::Sum(sum));
  return 0;
}
