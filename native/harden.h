// harden.h: a process that gives up root for good (the router process of
// `moat emperor`, a standalone instance that starts no sessions) first gives
// up, while still root, what could ever bring privilege back: afterwards no
// execve it makes can gain a capability, whatever it runs (a setuid-root
// binary, a file with capabilities).
//
// What holds, and on which threads (Linux keeps both attributes per thread,
// and a Node.js process has threads before any JS runs: V8's platform
// workers, libuv's pool, the router's own thread):
//   - no_new_privs: set on the calling thread, then given to every thread of
//     the process by installing a seccomp filter that allows everything with
//     SECCOMP_FILTER_FLAG_TSYNC (the kernel copies the caller's no_new_privs
//     to each thread it synchronises); the kernel's per-syscall action cache
//     makes an allow-all filter cost nothing per syscall. execve ignores
//     setuid/setgid bits and file capabilities on every thread from then on,
//     and every child (fork, execve) inherits it.
//   - the capability bounding set: emptied on the calling thread only (the
//     kernel has no way to change another thread's); children forked from
//     it (Node's child_process forks from the main thread) inherit the empty
//     set. Another thread keeps a full bounding set, which matters only at an
//     execve that could gain privilege, and no_new_privs rules that out.
//   - the effective, permitted and ambient sets are emptied on every thread
//     by the setuid that follows (glibc applies set*id to all threads);
//     that is src/privileges.ts's part, not this file's.
// Call it as root (PR_CAPBSET_DROP needs CAP_SETPCAP), before the setuid.
// Threads: any; affects the whole process as described.
// Syscalls: prctl (PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_CAPBSET_READ),
// seccomp (SECCOMP_SET_MODE_FILTER), open/read/close (/proc/sys/kernel/cap_last_cap).
#pragma once
#include <string>

namespace moat {

struct HardenReport {
  int last_cap = -1;         // the highest capability the kernel knows (all 0..last_cap dropped)
  bool all_threads = false;  // no_new_privs reached every thread (false: the calling thread only, see note)
  std::string note;          // why not, when all_threads is false
};

// Sets no_new_privs and empties the bounding set as above. False with *err
// when either failed on the calling thread; a process-wide no_new_privs
// that could not be had is a note in the report, not a failure.
bool harden_process(HardenReport* report, std::string* err);

}  // namespace moat
