// Scratch buffers of lcnn_lookup_conv shared by the states of every layer in the process: S, the
// split input of strided layers, the product before its split, the tile-major partial sums and
// the product's packed strips, which a call fills before it reads them and which are dead once
// the call returns.
//
// Why: with buffers of its own in every layer's state, each call wrote its S (up to 1.7 MB) and
// partial sums (up to 0.6 MB) into lines last touched a whole network earlier, long out of L2;
// shared, a layer writes the lines the layer before it has just used. lcnn-predict, alternating
// processes against buffers of each layer's own (medians of 3-4 rounds): ResNet-18-accurate 0.05
// at batch 1 0.915 of the time at one thread (S alone 0.945, the partial sums alone 0.97), 0.94-0.965
// at two; ResNet-18-fast 0.05 at one thread, batch 16, 0.93, at two threads, batch 1, 0.98;
// AlexNet-fast at batch 16 0.985 (one thread) and 0.97 (two), at batch 1 0.99.
//
// A buffer is lent for one call (ScratchLease) and given back when the call ends. S and the split
// input must keep zeros where their call does not write (the padding read after): their buffers
// are lent only to calls of the same layout key (LayoutKey, lookup_conv_prepared.h: layers that
// write the same floats), from buffers zeroed when they were made, so the floats no such call
// writes stay zero. The others are written before they are read: one key each for all layers,
// each buffer grown to the largest asked. Calls that run at the same time (MXNet's threaded engine) get buffers of
// their own.
#ifndef LCNN_LOOKUP_CONV_SCRATCH_H_
#define LCNN_LOOKUP_CONV_SCRATCH_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lookup_conv_pool.h"

// `floats` zeros in *v, from a 64-byte boundary (whole cache lines: the interleaved S is read one
// aligned register at a time).
static inline float* AlignedZeros(std::vector<float>* v, int64_t floats) {
  const int64_t line = 64 / sizeof(float);
  v->assign(floats + line, 0.f);
  const uintptr_t at = reinterpret_cast<uintptr_t>(v->data());
  return reinterpret_cast<float*>((at + 63) & ~static_cast<uintptr_t>(63));
}

// Floats from a 64-byte boundary in a zeroed vector, kept in a StatePool (one per kernel set)
// while no call holds them; the one given back last is taken first.
struct ScratchBuffer {
  std::vector<float> storage;
  float* data = nullptr;
  int64_t floats = 0;
  void Grow(int64_t n) {
    data = AlignedZeros(&storage, n);
    floats = n;
  }
};

// A buffer of the pool for the lifetime of this object (one call); none for 0 floats.
template <class Set>
class ScratchLease {
 public:
  ScratchLease(std::string key, int64_t floats) : key_(std::move(key)) {
    if (floats <= 0) return;
    buffer_ = Pool::Get().Take(key_);
    if (!buffer_) buffer_.reset(new ScratchBuffer());
    if (buffer_->floats < floats) buffer_->Grow(floats);  // (zeroed: a key of one layout asks one size)
  }
  ~ScratchLease() {
    if (buffer_) Pool::Get().Give(key_, std::move(buffer_));
  }
  ScratchLease(ScratchLease&&) = default;
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;
  float* data() const { return buffer_ ? buffer_->data : nullptr; }

 private:
  using Pool = StatePool<ScratchBuffer, Set>;
  std::string key_;
  std::unique_ptr<ScratchBuffer> buffer_;
};

#endif  // LCNN_LOOKUP_CONV_SCRATCH_H_
