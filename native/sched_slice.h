// sched_slice.h: asks the kernel for a short scheduler slice for the calling
// thread (the router's packet-moving loop).
//
// Why: on EEVDF kernels (Linux 6.6+) a thread woken by a packet does not
// preempt the task running on its CPU until that task's slice ends, which a
// kernel with HZ=250 notices at the next tick: up to 4 ms per hop of a
// round trip that crosses four wakeups (device, router, router, device).
// A thread with a shorter slice gets an earlier deadline and, from Linux
// 6.12, preempts at its wakeup (docs/latency.md has the traces). It changes
// nothing about the share of CPU the thread gets: its weight is its nice
// level's, as before. Unprivileged; an older kernel refuses the request
// (EINVAL) or ignores it, and nothing else changes. MOAT_SHORT_SLICE=0 in the
// environment leaves the kernel's default (for comparisons).
//
// Not for a vassal's device: in the vassal's cgroup, beside the tenant's
// processes, a device thread with the short slice made quiet round trips
// 0.12 ms slower and the tail under floods no better (docs/latency.md).
#pragma once
#include <cstdint>

namespace moat {

// The slice asked for: the kernel's smallest (0.1 ms).
constexpr uint64_t kShortSliceNs = 100000;

// Best effort: true if the kernel took it.
bool request_short_slice();

}  // namespace moat
