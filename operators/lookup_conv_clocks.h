// Stage clocks: where a call's time goes, stage by stage and thread by thread. Only a build with
// LCNN_STAGE_CLOCKS defined has them (`make -C operators clocks`: build-clocks/, for
// benchmarks/stage_profile.py); in the others this header declares nothing and costs nothing.
//
// Every region of lookup_conv_team.h's OnTeam is a stage, named by the function that opened it
// (ChannelRanges: the lookups of most layers; DictionaryProduct, TransposedProduct, ...). Per stage the clocks
// add up the regions' wall time, each thread's busy time (from its entry into the region to the
// end of its share) and the idle time, region by region team x wall - busy: the threads that
// finished first waiting for the last at the region's end. Regions run at one thread are clocked
// too (busy = wall, no idle). The operators' whole calls (`Forward`: "call of a layer", "call of a chain", whose
// layers' calls are inside it) and a layer call's prologue (the compare of the packed content, the
// plan, the coefficients' order) are clocked as stages of one thread. The chain's workers run
// their layers at once at batch 16: their regions' walls add up. At the process's exit the totals are printed to
// stderr, one line a stage:
//   lcnn stage clock: <stage> regions=<n> team=<largest team> wall_us=<sum> busy_us=<sum> idle_us=<sum>
// The clocks read the time (steady_clock) twice a region and thread, about 50 ns; a stage's
// totals are kept under a mutex (the chain's workers run their layers at once).
#ifndef LCNN_LOOKUP_CONV_CLOCKS_H_
#define LCNN_LOOKUP_CONV_CLOCKS_H_

#ifdef LCNN_STAGE_CLOCKS
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

// The totals of all stages, printed when the library unloads (the process's exit).
class StageClocks {
 public:
  static StageClocks& Get() {
    static StageClocks clocks;
    return clocks;
  }
  static double Now() {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  // (a stage's name up to its template arguments: DictionaryProduct<Avx512> is DictionaryProduct)
  void Add(const char* stage, int team, double wall_us, double busy_us) {
    const double idle_us = team * wall_us - busy_us;
    std::lock_guard<std::mutex> lock(mutex_);
    Totals& t = totals_[std::string(stage, std::strcspn(stage, "<"))];
    ++t.regions;
    t.team = std::max(t.team, team);
    t.wall_us += wall_us;
    t.busy_us += busy_us;
    t.idle_us += idle_us;
  }
  ~StageClocks() {
    for (const auto& [stage, t] : totals_)
      std::fprintf(stderr, "lcnn stage clock: %s regions=%lld team=%d wall_us=%.1f busy_us=%.1f idle_us=%.1f\n",
                   stage.c_str(), static_cast<long long>(t.regions), t.team, t.wall_us, t.busy_us, t.idle_us);
  }

 private:
  struct Totals {
    int64_t regions = 0;
    int team = 0;
    double wall_us = 0, busy_us = 0, idle_us = 0;
  };
  std::mutex mutex_;
  std::map<std::string, Totals> totals_;
};

// OnTeam's region, clocked (lookup_conv_team.h).
template <class Body>
static inline void ClockedTeam(int threads, const Body& body, const char* stage) {
  const double start = StageClocks::Now();
  if (threads <= 1) {
    body(0, 1);
    const double wall = StageClocks::Now() - start;
    return StageClocks::Get().Add(stage, 1, wall, wall);
  }
  std::vector<double> busy(threads, 0.0);
  int team = 1;
#pragma omp parallel num_threads(threads)
  {
    const double entered = StageClocks::Now();
    const int me = omp_get_thread_num();
    body(me, omp_get_num_threads());
    busy[me] = StageClocks::Now() - entered;
    if (me == 0) team = omp_get_num_threads();
  }
  double total = 0;
  for (double b : busy) total += b;
  StageClocks::Get().Add(stage, team, StageClocks::Now() - start, total);
}

// Clocks the scope it lives in as a stage of one thread.
class ScopeClock {
 public:
  explicit ScopeClock(const char* stage) : stage_(stage), start_(StageClocks::Now()) {}
  ~ScopeClock() { Stop(); }
  void Stop() {
    if (!stage_) return;
    const double wall = StageClocks::Now() - start_;
    StageClocks::Get().Add(stage_, 1, wall, wall);
    stage_ = nullptr;
  }

 private:
  const char* stage_;
  double start_;
};
#define LCNN_SCOPE_CLOCK(var, stage) ScopeClock var(stage)
#define LCNN_STOP_CLOCK(var) var.Stop()
#else
#define LCNN_SCOPE_CLOCK(var, stage)
#define LCNN_STOP_CLOCK(var)
#endif  // LCNN_STAGE_CLOCKS

#endif  // LCNN_LOOKUP_CONV_CLOCKS_H_
