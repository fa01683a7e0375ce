// The loops of the lookup layers' training kernels (lookup_train.cc registers the operators).
// lookup_train_kernels.cc is compiled with -mavx2 -mfma and runs only after initialize()
// checked the CPU; each function is one vectorised pass over n entries.
#ifndef LCNN_LOOKUP_TRAIN_KERNELS_H_
#define LCNN_LOOKUP_TRAIN_KERNELS_H_

#include <cstdint>

// The kept-mask ("alive") is one byte per entry: 1 while the entry may be non-zero.
// y = p where the entry is live (alive != 0 and |p| > eps), else 0
void ThresholdKernel(const float* p, const uint8_t* alive, float eps, int64_t n, float* y);
// gp = g where the entry is live, else 0
void ThresholdGradKernel(const float* g, const float* p, const uint8_t* alive, float eps, int64_t n,
                         float* gp);
// y = g + strength * sign(p) where |p| > eps (y may be g)
void L1Kernel(const float* g, const float* p, float eps, float strength, int64_t n, float* y);
// alive = live, y = p * live (y may be p)
void PruneKernel(const float* p, uint8_t* alive, float eps, int64_t n, float* y);

struct SgdParams {
  float lr, wd, momentum, rescale, clip, eps, l1;
};
// L1, mask, momentum SGD with weight decay, pruning (see lookup_train.cc); y may be w
void SgdKernel(const SgdParams& q, const float* w, const float* g, float* mom, uint8_t* alive, int64_t n,
               float* y);

#endif  // LCNN_LOOKUP_TRAIN_KERNELS_H_
