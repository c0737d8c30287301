// counter.h: a statistics counter with one writer (a loop thread) and any
// number of readers: a relaxed load and store, no locked add on the hot path.
#pragma once

#include <atomic>
#include <cstdint>

namespace moat {

struct Counter {
  std::atomic<uint64_t> v{0};
  void add(uint64_t n) { v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void set(uint64_t n) { v.store(n, std::memory_order_relaxed); }
  uint64_t get() const { return v.load(std::memory_order_relaxed); }
};

}  // namespace moat
