// How the operator's stages share their work between threads. A stage is written once, as a
// body over one thread's share; at one thread the body runs straight on the calling thread,
// without an OpenMP region: libgomp builds a team even for one thread (about 0.6 us a region,
// timed around each region's body; ResNet-18-fast runs 31 regions a call at batch 1). In
// lcnn-predict at one thread, batch 1, AVX-512 kernels, medians of 20-30 alternating rounds:
// ResNet-18-fast 0.03 1.617 -> 1.599 ms, AlexNet-fast 0.740 -> 0.722; at batch 16 and at two
// threads no change beyond the noise.
// A body never contains a worksharing construct (`omp for`): at one thread inside another
// team's worker it would bind to that team.
#ifndef LCNN_LOOKUP_CONV_TEAM_H_
#define LCNN_LOOKUP_CONV_TEAM_H_

#include <omp.h>

#include <cstdint>

#include "lookup_conv_clocks.h"

// body(thread, team) on a team of `threads` threads (a team may be smaller than asked), or
// body(0, 1) on the calling thread. `stage`: the calling function's name, under which a build
// with stage clocks (lookup_conv_clocks.h) counts the region's time.
template <class Body>
static inline void OnTeam(int threads, const Body& body, const char* stage = __builtin_FUNCTION()) {
#ifdef LCNN_STAGE_CLOCKS
  return ClockedTeam(threads, body, stage);
#endif
  if (threads <= 1) return body(0, 1);
#pragma omp parallel num_threads(threads)
  body(omp_get_thread_num(), omp_get_num_threads());
}

// Thread t's share [first, last) of n units in a team of `team`: consecutive units, shares that
// differ by at most one unit (as OpenMP's schedule(static)).
struct Share {
  int64_t first, last;
};
static inline Share ShareOf(int64_t n, int t, int team) { return {n * t / team, n * (t + 1) / team}; }

// body(i, thread) for i in [0, n), each thread its ShareOf.
template <class Body>
static inline void StaticFor(int64_t n, int threads, const Body& body, const char* stage = __builtin_FUNCTION()) {
  OnTeam(threads, [&](int t, int team) {
    const Share share = ShareOf(n, t, team);
    for (int64_t i = share.first; i < share.last; ++i) body(i, t);
  }, stage);
}

// body(i, thread) for i in [0, n): thread t takes units t, t + team, ... (schedule(static, 1)).
template <class Body>
static inline void InterleavedFor(int64_t n, int threads, const Body& body, const char* stage = __builtin_FUNCTION()) {
  OnTeam(threads, [&](int t, int team) {
    for (int64_t i = t; i < n; i += team) body(i, t);
  }, stage);
}

#endif  // LCNN_LOOKUP_CONV_TEAM_H_
