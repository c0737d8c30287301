// busy_poll.h: polling a little before sleeping, for latency.
//
// Why: on a lightly loaded host most of a ping's round trip through moat is
// not work but waking tasks that sleep on idle CPUs (on a VM an idle vCPU is
// halted and its wake-up goes through the hypervisor). Per round trip the
// device, the router, the device again and the pinger are each woken once.
// A loop that has just moved a packet polls its epoll (timeout 0) for a
// short window before it sleeps: the answer to what it sent finds it awake
// (the router waits for the vassal's answer, the device for the router's),
// and its CPU stays out of its idle state meanwhile, so a task woken there
// starts at once. Measured: docs/busy-poll.md.
//
// What it costs, bounded:
// - nothing idle: it polls only after a loop turn that moved a packet;
// - nothing under load: there the poll finds the next event at once;
// - other tasks are not starved: between polls it calls sched_yield(), so
//   a task woken on this CPU runs at once (without it, the woken task waited
//   for the window to end and round trips got longer, not shorter); once a
//   yield has run another task the poll ends and the loop sleeps (on EEVDF
//   every yield that lets another task run puts this thread's deadline a
//   slice later: a device polling beside a busy router waited ~1 ms for its
//   turn, where a sleeping one is woken afresh: docs/latency.md);
// - at most kBudgetPermille of one CPU on average (sparse one-way traffic
//   would otherwise keep it polling all the time): polling spends from a
//   budget that refills at that rate, holding at most kBurstNs (a poll that
//   overran its deadline, its CPU lent to others by sched_yield, leaves a
//   debt that is paid before the next poll).
// Threads: one loop thread polls; its counters may be read from any thread.
#pragma once

#include <sched.h>
#include <stdint.h>
#include <sys/epoll.h>

#include <algorithm>

#include "counter.h"
#include "mono_clock.h"

namespace moat {

class BusyPoll {
 public:
  static constexpr uint64_t kBudgetPermille = 50;   // 5% of a CPU
  static constexpr uint64_t kBurstNs = 10000000;    // 10 ms of polling saved up at most
  static constexpr uint64_t kMinPollNs = 5000;      // less budget than this: sleep
  static constexpr uint32_t kMaxWindowUs = 1000;
  static constexpr uint64_t kYieldedNs = 10000;     // a sched_yield() this long let another task run

  // window_us: how long to poll after traffic (0: never; at most kMaxWindowUs).
  void configure(uint32_t window_us) {
    window_ = uint64_t(std::min(window_us, kMaxWindowUs)) * 1000;
    budget_ = int64_t(kBurstNs);
  }
  uint64_t window_ns() const { return window_; }

  // This loop turn moved a packet: poll before sleeping.
  void moved() { pending_ = true; }

  // Before the loop sleeps: the poll's deadline, 0 to sleep at once.
  uint64_t begin(uint64_t now) {
    const bool want = pending_;
    pending_ = false;
    if (last_ != 0) budget_ = std::min(int64_t(kBurstNs), budget_ + int64_t((now - last_) * kBudgetPermille / 1000));
    last_ = now;
    if (!want || window_ == 0 || budget_ < int64_t(kMinPollNs)) return 0;
    return now + std::min(window_, uint64_t(budget_));
  }

  // The poll begun at start ended at now; caught: an event arrived.
  void end(bool caught, uint64_t start, uint64_t now) {
    const uint64_t spent = now - start;
    budget_ -= int64_t(spent);
    last_ = now;
    polls_.add(1);
    poll_ns_.add(spent);
    if (caught) caught_.add(1);
  }

  uint64_t polls() const { return polls_.get(); }
  uint64_t caught() const { return caught_.get(); }
  uint64_t poll_ns() const { return poll_ns_.get(); }

 private:
  uint64_t window_ = 0;
  bool pending_ = false;
  int64_t budget_ = 0;  // ns of polling allowed now; negative: a debt
  uint64_t last_ = 0;
  Counter polls_, caught_, poll_ns_;
};

// Keeping a loop warm between packets of a conversation.
//
// Why: measured on the 2-vCPU test VM (docs/latency.md), the first packet
// after a loop thread slept 300 ms or more cost ~1 ms more in each of the
// router's and the device's threads (p50 of the first ping after idle 1.1-1.2
// ms against 0.3-0.4 after 100 ms; uWSGI's small C processes 0.4 either way):
// time the guest sees as the thread running, with almost no samples in its
// code, in the kernel's syscall entry. Whatever the hypervisor lets go cold
// after a few hundred ms, a thread that wakes every 50 ms keeps it (100 ms
// still let one first ping in three through slow). So for
// a while after traffic (kWindowNs) the loop sleeps at most kTickMs at a
// time; a loop idle longer than that sleeps as before (a thousand idle
// vassals cost no wakeups). An interactive session (ssh keystrokes, a
// database's round trips, pings a second apart) stays inside the window.
struct KeepWarm {
  static constexpr int kTickMs = 50;
  static constexpr uint64_t kWindowNs = 10ull * 1000 * 1000 * 1000;  // 10 s
  uint64_t last_events = 0;  // mono_ns of the last wait that returned events

  // The wait to use instead of timeout_ms (-1: none) at now.
  int cap(int timeout_ms, uint64_t now) const {
    if (last_events == 0 || now - last_events > kWindowNs) return timeout_ms;
    return timeout_ms < 0 || timeout_ms > kTickMs ? kTickMs : timeout_ms;
  }
};

// epoll_wait(ep, evs, max, timeout_ms), polling first while bp says so and
// waking every KeepWarm::kTickMs for a while after events (warm).
// Returns what epoll_wait returned (0 for such a wakeup: nothing to do).
inline int busy_epoll_wait(BusyPoll& bp, int ep, struct epoll_event* evs, int max, int timeout_ms, KeepWarm* warm = nullptr) {
  if (warm && timeout_ms != 0) {
    const int n = busy_epoll_wait(bp, ep, evs, max, warm->cap(timeout_ms, mono_ns()));
    if (n > 0) warm->last_events = mono_ns();
    return n;
  }
  if (timeout_ms != 0 && bp.window_ns() != 0) {
    const uint64_t start = mono_ns();
    const uint64_t deadline = bp.begin(start);
    if (deadline != 0) {
      int n;
      uint64_t t;
      for (;;) {
        n = epoll_wait(ep, evs, max, 0);
        t = mono_ns();
        if (n != 0 || t >= deadline) break;
        sched_yield();
        // A yield this long ran another task: the CPU is contended, and on
        // EEVDF each further yield would push this thread's deadline back
        // a slice. Sleep instead; a wakeup places it afresh.
        const uint64_t after = mono_ns();
        if (after - t > BusyPoll::kYieldedNs) {
          t = after;
          break;
        }
      }
      bp.end(n > 0, start, t);
      if (n != 0) return n;
    }
  }
  return epoll_wait(ep, evs, max, timeout_ms);
}

}  // namespace moat
