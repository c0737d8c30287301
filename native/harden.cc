// harden.cc: no_new_privs and an empty capability bounding set before a
// process gives up root (harden.h says what holds on which thread).
#include "harden.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace moat {

namespace {

constexpr int kCapMax = 63;  // the bounding set is 64 bits wide

// The highest capability this kernel knows: /proc/sys/kernel/cap_last_cap,
// else the last one PR_CAPBSET_READ accepts.
int last_cap() {
  int fd = ::open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[16] = {};
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    char* end = nullptr;
    const long v = n > 0 ? std::strtol(buf, &end, 10) : -1;
    if (n > 0 && end != buf && v >= 0 && v <= kCapMax) return int(v);
  }
  int c = 0;
  while (c <= kCapMax && ::prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0) c++;
  return c - 1;
}

std::string errtext(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

bool harden_process(HardenReport* report, std::string* err) {
  *report = HardenReport{};
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    *err = errtext("set no_new_privs");
    return false;
  }
  report->last_cap = last_cap();
  for (int c = 0; c <= report->last_cap; c++) {
    if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) {
      *err = errtext("drop capability " + std::to_string(c) + " from the bounding set (this needs root: call it before the privilege drop)");
      return false;
    }
  }
  for (int c = 0; c <= report->last_cap; c++) {
    if (::prctl(PR_CAPBSET_READ, c, 0, 0, 0) != 0) {
      *err = "capability " + std::to_string(c) + " is still in the bounding set after dropping it";
      return false;
    }
  }
  // Every thread: an allow-all filter, synchronised, carries no_new_privs along.
  struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  struct sock_fprog prog = {1, &allow};
  const long rc = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
  if (rc == 0) {
    report->all_threads = true;
  } else if (rc > 0) {
    report->note = "thread " + std::to_string(rc) + " has a seccomp filter of its own: no_new_privs is set on the calling thread only";
  } else {
    report->note = errtext("seccomp (no filters in this kernel?)") + ": no_new_privs is set on the calling thread only";
  }
  return true;
}

}  // namespace moat
