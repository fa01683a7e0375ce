// Loops of the training kernels (see lookup_train_kernels.h). Compiled with -mavx2 -mfma -fopenmp.
#include "lookup_train_kernels.h"

#include <cmath>

static inline bool Live(float p, uint8_t alive, float eps) { return alive != 0 && std::fabs(p) > eps; }

void ThresholdKernel(const float* p, const uint8_t* a, float eps, int64_t n, float* y) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = Live(p[i], a[i], eps) ? p[i] : 0.f;
}

void ThresholdGradKernel(const float* g, const float* p, const uint8_t* a, float eps, int64_t n, float* gp) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) gp[i] = Live(p[i], a[i], eps) ? g[i] : 0.f;
}

void L1Kernel(const float* g, const float* p, float eps, float strength, int64_t n, float* y) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float s = p[i] > eps ? strength : (p[i] < -eps ? -strength : 0.f);
    y[i] = g[i] + s;
  }
}

void PruneKernel(const float* p, uint8_t* a, float eps, int64_t n, float* y) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const bool live = Live(p[i], a[i], eps);
    a[i] = live;
    y[i] = live ? p[i] : 0.f;
  }
}

void SgdKernel(const SgdParams& q, const float* w, const float* g, float* mom, uint8_t* a, int64_t n,
               float* y) {
  const float clip = q.clip > 0 ? q.clip : INFINITY;  // branch-free, so the loop vectorises
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float wi = w[i];
    const float sign = static_cast<float>(wi > q.eps) - static_cast<float>(wi < -q.eps);
    float gi = q.rescale * g[i] + q.l1 * sign;
    gi = gi > clip ? clip : (gi < -clip ? -clip : gi);
    const float m = q.momentum * mom[i] - q.lr * q.wd * wi - q.lr * gi;
    const float next = wi + m;
    const bool live = (a[i] != 0) & (std::fabs(next) > q.eps);
    mom[i] = m;
    a[i] = live;
    y[i] = live ? next : 0.f;
  }
}
