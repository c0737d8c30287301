// sched_slice.cc: see sched_slice.h.
#include "sched_slice.h"

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
constexpr uint64_t kKeepParams = 0x10;  // SCHED_FLAG_KEEP_PARAMS: the nice level stays
}  // namespace

bool request_short_slice() {
#ifdef SYS_sched_setattr
  // MOAT_SHORT_SLICE=0: the kernel's default slice (to compare; docs/latency.md).
  const char* env = getenv("MOAT_SHORT_SLICE");
  if (env && strcmp(env, "0") == 0) return false;
  SchedAttr a;
  memset(&a, 0, sizeof a);
  a.size = sizeof a;
  a.sched_policy = SCHED_OTHER;
  a.sched_flags = kKeepParams;
  a.sched_runtime = kShortSliceNs;
  if (syscall(SYS_sched_setattr, 0, &a, 0) == 0) return true;
  // Kernels that do not know KEEP_PARAMS: the same without it (nice 0, as a new thread has).
  a.sched_flags = 0;
  return syscall(SYS_sched_setattr, 0, &a, 0) == 0;
#else
  return false;
#endif
}

}  // namespace moat
