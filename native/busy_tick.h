// busy_tick.h: while the router's loop is busy and waits for its CPU
// (LoadSlice decides, by its run-queue wait), a thread of its own wakes
// every kPeriodNs on the CPU where the loop last ran, so that the kernel
// looks at that CPU between its ticks.
//
// Why: a busy loop is not woken, it is preempted. When the kernel gives its
// CPU to a tenant's process (at a tick, once the loop has had its share),
// the loop waits, runnable, until the kernel looks at that CPU again: the
// next tick (4 ms at HZ=250; this kernel has no hrtick), unless a task wakes
// there. Every vassal's packets wait with it: a neighbour's ping under two
// floods waited 3.8 ms behind a flooding tenant's process (docs/latency.md,
// "The busy loop waits a tick"). A wake-up on that CPU makes the kernel
// update the running task's time and, once that task's slice protection
// has ended, reschedule it; the loop, with its short slice, is then picked.
// Only while the loop waits: a loop that sleeps between packets is woken by
// them and preempts then, and ticks would only cut its turns short (paced
// floods lost packets at lower rates with them; docs/latency.md). The thread
// asks for the short slice too, so its wake-up ends the running task's
// protection (Linux 6.12+; older kernels refuse, and the wake-up still makes
// the kernel look). Its CPU follows the loop's (sched_setaffinity, only when
// the loop moved). Cost: 2,000 wake-ups a second, only while it ticks.
// MOAT_BUSY_TICK=0 in the environment: no thread; =N: every N us (100-4000),
// to compare.
// Threads: set_ticking() and note_cpu() from the loop thread; one ticking
// thread, detached, sharing its state, so a loop that ends never waits for it.
// Syscalls (ticking thread): clock_nanosleep, sched_setaffinity,
// sched_getattr, sched_setattr.
#pragma once
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "thread_slice.h"

namespace moat {

class BusyTick {
 public:
  static constexpr long kPeriodNs = 500000;  // 0.5 ms: 8 looks a tick at HZ=250

  BusyTick() : s_(std::make_shared<State>()) {
    const char* env = getenv("MOAT_BUSY_TICK");
    if (env && strcmp(env, "0") == 0) enabled_ = false;
    else if (env) {
      // Microseconds, to compare periods; out of range: the default.
      const long us = strtol(env, nullptr, 10);
      if (us >= 100 && us <= 4000) s_->period_ns = us * 1000;
    }
  }
  ~BusyTick() {
    {
      std::lock_guard<std::mutex> g(s_->mu);
      s_->stop.store(true, std::memory_order_relaxed);
    }
    s_->cv.notify_one();
  }
  BusyTick(const BusyTick&) = delete;
  BusyTick& operator=(const BusyTick&) = delete;

  // LoadSlice's window decided: tick (busy and waiting) or not. The thread
  // starts with the first window that ticks; no thread to be had: no ticks,
  // nothing else.
  void set_ticking(bool ticking) {
    if (!enabled_ || ticking == s_->ticking.load(std::memory_order_relaxed)) return;
    {
      std::lock_guard<std::mutex> g(s_->mu);
      s_->ticking.store(ticking, std::memory_order_relaxed);
    }
    if (ticking && !started_) {
      started_ = true;
      try {
        std::thread(run, s_).detach();
      } catch (const std::system_error&) {
        enabled_ = false;
        return;
      }
    }
    s_->cv.notify_one();
  }

  // Where the loop runs now (its thread calls it while busy).
  void note_cpu() {
    if (!started_) return;
    const int cpu = sched_getcpu();
    if (cpu >= 0) s_->cpu.store(cpu, std::memory_order_relaxed);
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::atomic<bool> ticking{false};
    std::atomic<int> cpu{-1};
    long period_ns = kPeriodNs;  // set before the thread starts
    std::atomic<bool> stop{false};
  };

  static void run(std::shared_ptr<State> s) {
    pthread_setname_np(pthread_self(), "moat-tick");
    set_slice(kShortSliceNs);
    int pinned = -1;
    const struct timespec period = {0, s->period_ns};
    while (!s->stop.load(std::memory_order_relaxed)) {
      if (!s->ticking.load(std::memory_order_relaxed)) {
        std::unique_lock<std::mutex> g(s->mu);
        s->cv.wait(g, [&] { return s->stop.load(std::memory_order_relaxed) || s->ticking.load(std::memory_order_relaxed); });
        continue;
      }
      const int cpu = s->cpu.load(std::memory_order_relaxed);
      if (cpu >= 0 && cpu != pinned && cpu < CPU_SETSIZE) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        // Refused (the CPU left our cpuset): tick where we are.
        if (sched_setaffinity(0, sizeof set, &set) == 0) pinned = cpu;
      }
      clock_nanosleep(CLOCK_MONOTONIC, 0, &period, nullptr);
    }
  }

  std::shared_ptr<State> s_;
  bool enabled_ = true;
  bool started_ = false;
};

}  // namespace moat
