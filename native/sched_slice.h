// sched_slice.h: a short scheduler slice for the router's loop thread while
// it is busy (LoadSlice), the kernel's default while it is not.
//
// Why short when busy: on EEVDF kernels (Linux 6.6+) a thread woken by a
// packet does not preempt the task running on its CPU until that task's
// slice ends, which a kernel with HZ=250 notices at the next tick. While
// vassals flood, the router's thread is woken and preempted all the time,
// and each wait for another task's slice is a wait for every vassal's
// packets (a neighbour's ping p99 under two floods: 4.2-5.7 ms with the
// short slice, up to 76 ms without; docs/latency.md). A thread with a
// shorter slice gets an earlier deadline and, from Linux 6.12, preempts at
// its wakeup. Its share of the CPU is unchanged; unprivileged; an older
// kernel refuses the request (EINVAL) and nothing else changes.
//
// Why default when quiet: a short-slice thread preempts the very process
// that woke it before that one has gone to sleep, and a quiet round trip
// took 0.1 ms longer in the direction whose first hop it is
// (docs/latency.md, "The short slice, measured again"). A vassal's device
// keeps the default always: beside the tenant's processes in its cgroup
// the short slice was worse quiet and under floods alike.
//
// MOAT_SHORT_SLICE=1 in the environment: always short; =0: never (to
// compare).
#pragma once
#include <cstdint>

namespace moat {

// The slice asked for: the kernel's smallest (0.1 ms).
constexpr uint64_t kShortSliceNs = 100000;

// Sets the calling thread's slice: kShortSliceNs, or the kernel's default
// (0). Best effort: true if the kernel took it.
bool set_slice(uint64_t ns);

// The loop thread's slice by its load, decided once per window.
class LoadSlice {
 public:
  static constexpr uint64_t kWindowNs = 100000000;  // 100 ms
  static constexpr uint64_t kBusyPackets = 1000;    // 10,000 packets/s: short
  static constexpr uint64_t kQuietPackets = 100;    // under 1,000 packets/s: default again

  // Reads MOAT_SHORT_SLICE; call on the loop thread.
  void init();
  // A packet moved (per packet: a counter, nothing else).
  void moved() { packets_++; }
  // Once per loop turn: at a window's end, the slice for the next.
  void tick(uint64_t now_ns) {
    if (now_ns - window_start_ < kWindowNs) return;
    decide(packets_ - at_start_);
    window_start_ = now_ns;
    at_start_ = packets_;
  }

 private:
  void decide(uint64_t packets);

  enum class Mode { ByLoad, Always, Never } mode_ = Mode::ByLoad;
  uint64_t packets_ = 0, at_start_ = 0, window_start_ = 0;
  bool short_ = false;
  bool refused_ = false;  // the kernel refused once: stop asking
};

}  // namespace moat
