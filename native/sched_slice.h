// sched_slice.h: how the router's loop thread shares its CPU, by its load
// (LoadSlice): while busy it takes a short scheduler slice and gives the CPU
// back every 50 us, and while it also waits for its CPU a thread of its own
// wakes on that CPU every 0.5 ms (busy_tick.h: a loop waiting for its CPU
// gets it back between ticks); while quiet it keeps the kernel's default.
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
// Why yield when busy: a router kept busy by floods never sleeps, so the
// kernel looks at its CPU again only at the next tick (4 ms at HZ=250). Its
// write to a vassal's socket wakes the device with a "sync" wakeup, which
// puts the device on the writer's CPU (the writer is expected to sleep
// soon), even while the other CPU idles. There the device, and with it the
// vassal's reply, waited up to a tick behind the router: the worst round
// trips of a neighbour under two floods (docs/latency.md, "The device
// behind a busy router"). sched_yield() makes the kernel look: it picks by
// its own fairness (a thread that waited goes before the router, which has
// had more than its share) and returns at once if nothing waits. At most
// one per kYieldNs of busy loop turns: 20,000 calls a second.
//
// Why default when quiet: a short-slice thread preempts the very process
// that woke it before that one has gone to sleep, and a quiet round trip
// took 0.1 ms longer in the direction whose first hop it is
// (docs/latency.md, "The short slice, measured again"). A vassal's device
// keeps the default always: beside the tenant's processes in its cgroup
// the short slice was worse quiet and under floods alike.
//
// MOAT_SHORT_SLICE=1 in the environment: always short; =0: never.
// MOAT_BUSY_YIELD=0: no yields. Both to compare.
#pragma once
#include <sched.h>

#include <cstdint>

#include "busy_tick.h"
#include "thread_slice.h"

namespace moat {

// The loop thread's slice and yields by its load, decided once per window.
class LoadSlice {
 public:
  static constexpr uint64_t kWindowNs = 100000000;  // 100 ms
  static constexpr uint64_t kBusyPackets = 1000;    // 10,000 packets/s: busy
  static constexpr uint64_t kQuietPackets = 100;    // under 1,000 packets/s: quiet again
  static constexpr uint64_t kYieldNs = 50000;       // while busy, a yield per 50 us
  // Busy and waiting for its CPU: 1 ms or more of the window spent runnable
  // but not running (the kernel's run_delay). Only then does the tick thread
  // run (busy_tick.h): a loop that gets its CPU when it wakes has nothing to
  // gain from it, and its turns would only be cut short. (The tick thread's
  // own wake-ups take about that much from a loop it shares a CPU with, so
  // once started it may keep ticking while the loop stays busy; measured
  // with this bar, docs/latency.md.)
  static constexpr uint64_t kWaitingNs = 1000000;

  LoadSlice() = default;
  ~LoadSlice();

  // Reads MOAT_SHORT_SLICE and MOAT_BUSY_YIELD and opens the thread's
  // schedstat; call on the loop thread.
  void init();
  // A packet moved (per packet: a counter, nothing else).
  void moved() { packets_++; }
  // Once per loop turn: while busy a yield when one is due; at a window's
  // end, busy or quiet for the next.
  void tick(uint64_t now_ns) {
    if (busy_ && now_ns - last_yield_ >= kYieldNs) {
      last_yield_ = now_ns;
      if (yields_) sched_yield();
      busy_tick_.note_cpu();
    }
    if (now_ns - window_start_ < kWindowNs) return;
    decide(packets_ - at_start_);
    window_start_ = now_ns;
    at_start_ = packets_;
  }

 private:
  void decide(uint64_t packets);
  // ns this thread has spent runnable but not running, or -1 (no schedstat).
  int64_t run_delay();

  enum class Mode { ByLoad, Always, Never } mode_ = Mode::ByLoad;
  uint64_t packets_ = 0, at_start_ = 0, window_start_ = 0, last_yield_ = 0;
  int64_t last_delay_ = -1;  // run_delay at the window's start
  int schedstat_fd_ = -1;    // /proc/thread-self/schedstat, opened by init()
  bool busy_ = false;     // the last window moved kBusyPackets (until one under kQuietPackets)
  bool yields_ = true;    // MOAT_BUSY_YIELD=0: never
  bool short_ = false;
  bool refused_ = false;  // the kernel refused once: stop asking
  BusyTick busy_tick_;    // while busy and waiting, the kernel looks at the loop's CPU every 0.5 ms
};

}  // namespace moat
