// runtime.h: the vassal's pid 1 (docs/runtime-protocol.md).
//
// Job: set the vassal up in uWSGI's order (exec-post-jail, device, address
// and route, vassal-dir, pivot-root, exec-as-root, gid/uid, exec-as-user,
// attach-daemons), report `ready`, then run one poll() loop: serve the pty
// servers (moat::PtyServer forkpty routers and a moat::SharedPty, opened as
// root before the privilege drop, their sessions forked from this loop),
// reap every child and orphan, restart attached daemons with backoff, run
// and kill jobs, answer `stop`, SIGTERM/SIGINT and the channel's end by
// closing the pty servers (hanging up their sessions) and stopping every
// process of the vassal (SIGTERM, SIGKILL after kStopTimeoutMs), then exit.
//
// Threads: this one, and the moat::Device thread (device.h) whose events are
// written to the channel from its own thread (emit() is thread-safe). Child
// processes are made with fork(); between fork and execve the child calls
// only async-signal-safe functions (the device thread may hold locks).
//
// Limits: at most kMaxJobs jobs running at once; a job ID is 1-64 characters
// of [A-Za-z0-9._:-]. Without a pid namespace the runtime is a subreaper and
// stops the process groups it made (orphans of hooks it cannot name are left
// to the kernel's namespace teardown only when it is pid 1).
//
// Syscalls: signalfd, sigprocmask, poll, fork, setsid, execve, close_range,
// waitpid, kill, prctl(PR_SET_CHILD_SUBREAPER), clock_gettime, open, dup2,
// eventfd, ioctl(TIOCSCTTY), dup2, read, write, plus those of jail.h,
// device.h, pty_router.h and pty_shared.h.
#pragma once
#include "channel.h"

namespace moat {
namespace vassal {

// Runs the runtime with the config and the reader the launcher filled (its
// buffer may already hold commands sent after "start"). Returns the exit code.
int run_runtime(Config& cfg, LineReader& reader);

}  // namespace vassal
}  // namespace moat
