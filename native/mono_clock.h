// mono_clock.h: CLOCK_MONOTONIC in nanoseconds (vDSO: no syscall), for the
// data path's timing (holding, busy polling, accept pauses).
#pragma once

#include <stdint.h>
#include <time.h>

namespace moat {

inline uint64_t mono_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

}  // namespace moat
