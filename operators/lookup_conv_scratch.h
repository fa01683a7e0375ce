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

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

// Buffers kept while no call holds them: a few per layout of about three ResNet-18s; beyond,
// the oldest goes (a later call of its key makes a new one, zeroed).
static const size_t kPooledScratch = 64;

// Floats from a 64-byte boundary in a zeroed vector.
struct ScratchBuffer {
  std::vector<float> storage;
  float* data = nullptr;
  int64_t floats = 0;
  void Grow(int64_t n) {
    storage.assign(n + 64 / sizeof(float), 0.f);
    const uintptr_t at = reinterpret_cast<uintptr_t>(storage.data());
    data = reinterpret_cast<float*>((at + 63) & ~static_cast<uintptr_t>(63));
    floats = n;
  }
};

// One pool per kernel set Set (as lookup_conv_pool.h's StatePool).
template <class Set>
class ScratchPool {
 public:
  static ScratchPool& Get() {
    static ScratchPool* pool = new ScratchPool;  // never destroyed: states may outlive exit()
    return *pool;
  }
  // A free buffer of `key` of at least `floats` floats (zeroed if made or grown now): the one
  // given back last, whose lines are the likeliest still in cache.
  std::unique_ptr<ScratchBuffer> Take(const std::string& key, int64_t floats) {
    std::unique_ptr<ScratchBuffer> found;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = free_.rbegin(); it != free_.rend(); ++it) {
        if (it->first == key) {
          found = std::move(it->second);
          free_.erase(std::next(it).base());
          break;
        }
      }
    }
    if (!found) found.reset(new ScratchBuffer());
    if (found->floats < floats) found->Grow(floats);
    return found;
  }
  void Give(const std::string& key, std::unique_ptr<ScratchBuffer> buffer) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.emplace_back(key, std::move(buffer));
    if (free_.size() > kPooledScratch) free_.pop_front();  // the oldest
  }

 private:
  std::mutex mutex_;
  std::list<std::pair<std::string, std::unique_ptr<ScratchBuffer>>> free_;  // oldest first
};

// A buffer of the pool for the lifetime of this object (one call); none for 0 floats.
template <class Set>
class ScratchLease {
 public:
  ScratchLease(std::string key, int64_t floats) : key_(std::move(key)) {
    if (floats > 0) buffer_ = ScratchPool<Set>::Get().Take(key_, floats);
  }
  ~ScratchLease() {
    if (buffer_) ScratchPool<Set>::Get().Give(key_, std::move(buffer_));
  }
  ScratchLease(ScratchLease&&) = default;
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;
  float* data() const { return buffer_ ? buffer_->data : nullptr; }

 private:
  std::string key_;
  std::unique_ptr<ScratchBuffer> buffer_;
};

#endif  // LCNN_LOOKUP_CONV_SCRATCH_H_
