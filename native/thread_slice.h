// thread_slice.h: a thread's scheduler slice (SCHED_OTHER, Linux 6.12+),
// for the router's loop (sched_slice.h) and its ticking thread (busy_tick.h).
#pragma once
#include <cstdint>

namespace moat {

// The slice asked for: the kernel's smallest (0.1 ms).
constexpr uint64_t kShortSliceNs = 100000;

// Sets the calling thread's slice: kShortSliceNs, or the kernel's default
// (0). Best effort: true if the kernel took it.
bool set_slice(uint64_t ns);

}  // namespace moat
