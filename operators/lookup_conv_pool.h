// The pool of prepared states of lcnn_lookup_conv (lookup_conv.cc): what an operator state
// built for its attributes, input shape and threads (plan and buffers), kept after MXNet
// destroys the state, for the next state of the same key.
//
// Why: MXNet makes a new operator state for every call of a network hybridized without
// static_shape (plain hybridize(), or static_alloc alone); a fresh plan and freshly touched
// buffers then cost more than the layer itself at batch 1 (AlexNet's conv1: 2.7-4.7 ms a
// call, against 1.0 ms with a kept state). A state gives its prepared value back here when
// MXNet destroys it; the next state of the same key takes it (one state at a time: buffers are
// not shared). The key never decides alone: the taker still compares the packed content.
// lookup_conv_scratch.h keeps the calls' scratch buffers in a pool of this kind too.
#ifndef LCNN_LOOKUP_CONV_POOL_H_
#define LCNN_LOOKUP_CONV_POOL_H_

#include <cstddef>
#include <iterator>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

// Values kept (prepared states, scratch buffers): those of about three ResNet-18s' lookup layers;
// beyond, the oldest goes.
static const size_t kPooledStates = 64;

// One pool per type T and kernel set Set (each set's plans are its own: tiles of its registers).
template <class T, class Set>
class StatePool {
 public:
  static StatePool& Get() {
    static StatePool* pool = new StatePool;  // never destroyed: states may outlive exit()
    return *pool;
  }
  // The value kept under `key` (removed from the pool), or null: of several, the one given back
  // last, whose memory is the likeliest still in cache.
  std::unique_ptr<T> Take(const std::string& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
      if (it->first == key) {
        std::unique_ptr<T> found = std::move(it->second);
        entries_.erase(std::next(it).base());
        return found;
      }
    }
    return nullptr;
  }
  void Give(const std::string& key, std::unique_ptr<T> value) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.emplace_back(key, std::move(value));
    if (entries_.size() > kPooledStates) entries_.pop_front();  // the oldest
  }

 private:
  std::mutex mutex_;
  std::list<std::pair<std::string, std::unique_ptr<T>>> entries_;  // oldest first
};

#endif  // LCNN_LOOKUP_CONV_POOL_H_
