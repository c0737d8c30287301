// sched_slice.h: asks the kernel for a short scheduler slice for the calling
// thread (the router's packet-moving loop), when MOAT_SHORT_SLICE=1 is in
// the environment; otherwise nothing changes.
//
// Why it exists: on EEVDF kernels (Linux 6.6+) a thread woken by a packet
// does not preempt the task running on its CPU until that task's slice
// ends, which a kernel with HZ=250 notices at the next tick. A thread with
// a shorter slice gets an earlier deadline and, from Linux 6.12, preempts at
// its wakeup (docs/latency.md has the traces). Its share of the CPU is
// unchanged; unprivileged; an older kernel refuses the request (EINVAL).
//
// Why it is off by default: measured again on the bench (docs/latency.md,
// "The short slice, measured again"), a short-slice loop thread preempts
// the very process that woke it (the pinger, in the same cgroup), and
// quiet round trips took 0.1 ms longer in the direction whose first hop it
// is, while the tail under floods was no better. It stays as a switch to
// measure other kernels with.
#pragma once
#include <cstdint>

namespace moat {

// The slice asked for: the kernel's smallest (0.1 ms).
constexpr uint64_t kShortSliceNs = 100000;

// Best effort: true if the kernel took it.
bool request_short_slice();

}  // namespace moat
