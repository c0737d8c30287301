// peer_identity.h: who is at the other end of a peer socket, named so that a
// reused pid number cannot inherit it: the pid SO_PEERCRED reports and that
// process's start time (/proc/PID/stat field 22, clock ticks since boot).
// A binding names a vassal's runtime by both (router.h, Binding).
//
// Why a reused number cannot match: Linux hands out pid numbers cyclically,
// so a number comes back only after the counter has gone round pid_max; the
// process that gets it then starts at a later tick than the one that had it
// (going round pid_max within one 10 ms tick is not possible), so its start
// time differs. The pid alone is what a new process inherits; a network
// namespace inode is shared by every vassal without a net namespace and its
// number is reused once the namespace is gone; a cgroup outlives runtimes.
//
// The start time read at accept must be the connecting process's: the
// peer's pidfd (SO_PEERPIDFD, Linux 6.5+) must still name a process after
// /proc was read (a zombie still holds its number), else the number may
// have passed to another process in between and the peer gets no start time
// (it then matches no pid binding). Kernels without SO_PEERPIDFD skip that
// check: a reuse between connect() and accept() would need the counter to
// go round pid_max in that time.
//
// Threads: any. Syscalls: getsockopt(SO_PEERPIDFD), open/read/close
// (/proc/PID/stat), pidfd_send_signal (signal 0), close. The router calls it
// once per accepted peer, never per packet.
#pragma once
#include <cstdint>
#include <sys/types.h>

namespace moat {

// pid's start time in clock ticks since boot, or 0 if pid is gone or its
// stat cannot be read.
uint64_t process_start_time(pid_t pid);

// The start time of the process that connected the socket fd (pid: its
// SO_PEERCRED pid), or 0 if that process is gone.
uint64_t peer_start_time(int fd, pid_t pid);

}  // namespace moat
