// sched_slice.cc: see sched_slice.h.
#include "sched_slice.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cstdlib>
#include <cstring>

namespace moat {

namespace {
// struct sched_attr (include/uapi/linux/sched/types.h); glibc has no wrapper.
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;  // SCHED_OTHER: the slice (Linux 6.12+)
  uint64_t sched_deadline;
  uint64_t sched_period;
};
}  // namespace

bool set_slice(uint64_t ns) {
#ifdef SYS_sched_setattr
  // The thread's own attributes (its nice level) with only the slice
  // changed. Not SCHED_FLAG_KEEP_PARAMS: with it the kernel keeps the
  // runtime too and succeeds without changing the slice (seen on 6.18:
  // se.slice stayed at the default 1.4 ms). A runtime of 0 gives the
  // thread the kernel's default slice back.
  SchedAttr a;
  memset(&a, 0, sizeof a);
  if (syscall(SYS_sched_getattr, 0, &a, sizeof a, 0) != 0 || a.sched_policy != SCHED_OTHER) {
    memset(&a, 0, sizeof a);
    a.sched_policy = SCHED_OTHER;
  }
  a.size = sizeof a;
  a.sched_flags = 0;
  a.sched_runtime = ns;
  return syscall(SYS_sched_setattr, 0, &a, 0) == 0;
#else
  (void)ns;
  return false;
#endif
}

void LoadSlice::init() {
  const char* env = getenv("MOAT_SHORT_SLICE");
  if (env && strcmp(env, "1") == 0) mode_ = Mode::Always;
  else if (env && strcmp(env, "0") == 0) mode_ = Mode::Never;
  if (mode_ == Mode::Always) short_ = set_slice(kShortSliceNs);
  const char* y = getenv("MOAT_BUSY_YIELD");
  yields_ = !(y && strcmp(y, "0") == 0);
  schedstat_fd_ = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
}

LoadSlice::~LoadSlice() {
  if (schedstat_fd_ >= 0) close(schedstat_fd_);
}

int64_t LoadSlice::run_delay() {
  if (schedstat_fd_ < 0) return -1;
  // "on-CPU ns, run-queue wait ns, time slices\n"
  char buf[96];
  const ssize_t n = pread(schedstat_fd_, buf, sizeof buf - 1, 0);
  if (n <= 0) return -1;
  buf[n] = 0;
  char* end = nullptr;
  strtoull(buf, &end, 10);
  if (end == buf) return -1;
  const char* second = end;
  const unsigned long long v = strtoull(second, &end, 10);
  return end == second ? -1 : int64_t(v);
}

void LoadSlice::decide(uint64_t packets) {
  if (packets >= kBusyPackets) busy_ = true;
  else if (packets < kQuietPackets) busy_ = false;
  // Tick while busy and waiting for the CPU; without schedstat, while busy.
  const int64_t delay = run_delay();
  const bool waiting = delay < 0 || (last_delay_ >= 0 && delay - last_delay_ >= int64_t(kWaitingNs));
  last_delay_ = delay;
  busy_tick_.set_ticking(busy_ && waiting);
  if (mode_ != Mode::ByLoad || refused_) return;
  if (!short_ && busy_) {
    if (set_slice(kShortSliceNs)) short_ = true;
    else refused_ = true;  // an older kernel: nothing to switch
  } else if (short_ && !busy_) {
    set_slice(0);
    short_ = false;
  }
}

}  // namespace moat
