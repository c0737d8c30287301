// pty_process.h: a process on a pseudo-terminal, for both pty servers: a new
// pty pair, the command started on it as a session of its own, and the end
// of that session.
//
// Ending a session (uWSGI leaves processes behind; moat does not): every
// process whose session id is the session's (found in /proc) gets SIGHUP and
// SIGCONT (so stopped jobs see it), then SIGKILL after a grace. A process
// that calls setsid() itself leaves the session and is not found (inside a
// vassal, the vassal's pid namespace and stop cover it).
//
// Limits: /proc must be the one of the caller's pid namespace. The session's
// first process (its leader) is held through a pidfd: a signal never reaches
// a reused pid, and its exit is an epoll event; if the embedding program
// reaps it first (a pid-1 reaper calling waitpid(-1)) its status is unknown.
// Threads: children are forked from the calling thread; between fork and exec
// only async-signal-safe calls, the signal mask and dispositions are reset.
// Syscalls: posix_openpt (open /dev/ptmx), ioctl (TIOCSPTLCK, TIOCGPTPEER,
// TIOCSCTTY, TIOCSWINSZ), fork, setsid, dup2, close_range, sigaction,
// sigprocmask, fchown, setgroups, setgid, setuid, chdir, execve, write,
// pidfd_open, pidfd_send_signal, waitid (P_PIDFD), waitpid, kill,
// open/read/close of /proc/N/stat, getdents64 of /proc, nanosleep.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace moat {

// What runs in a pty, as whom.
struct PtyCommandOptions {
  // Empty: /bin/sh. uWSGI's rule: a command with a space runs as
  // `/bin/sh -c COMMAND`; without one, it is executed directly (moat: a word
  // that is not a path, e.g. `bash`, also goes through /bin/sh -c).
  std::string command;
  std::vector<std::string> env;  // the process's environment; empty: the server's own
  std::string cwd;               // chdir before exec; empty: keep
  int64_t uid = -1;              // setuid (after setgroups([]) and setgid); -1 keeps
  int64_t gid = -1;              // setgid; -1 keeps
  uint16_t rows = 24, cols = 80; // initial window size
};

// A new pty pair, both ends close-on-exec, the master non-blocking, the
// window rows x cols. False with *err.
bool open_pty(uint16_t rows, uint16_t cols, int* master, int* slave, std::string* err);

// Spawns o.command on the pty slave `slave`: the child makes a new session,
// takes the slave as its controlling terminal and stdio, drops privileges,
// execs. Returns the pid, or -1 with *err.
pid_t pty_spawn(int slave, const PtyCommandOptions& o, std::string* err);

// Signals every live process whose session id is `sid` (scans /proc; zombies
// are skipped: they have exited). Returns how many were signalled (signal 0:
// how many are left).
int pty_signal_session(pid_t sid, int sig);

// The first process of a session, held through a pidfd.
class PtyLeader {
 public:
  PtyLeader() = default;
  PtyLeader(const PtyLeader&) = delete;
  PtyLeader& operator=(const PtyLeader&) = delete;
  ~PtyLeader();  // closes the pidfd; signals nothing

  // pty_spawn, then its pidfd. False with *err, and then nothing is left running.
  bool spawn(int slave, const PtyCommandOptions& o, std::string* err);
  pid_t pid() const { return pid_; }      // also the session id; -1 before spawn()
  int pidfd() const { return pidfd_; }    // readable once it exited; -1 once reaped
  bool alive() const { return pidfd_ >= 0; }
  int status() const { return status_; } // wait status once reaped; -1 unknown

  // Reaps it if it has exited, without blocking. True once reaped (its pidfd
  // is then closed, which also takes it out of any epoll set).
  bool reap();
  // Blocks until reaped (after kill()).
  void wait();
  void signal(int sig);       // to the leader, unless reaped
  void hangup();              // SIGHUP + SIGCONT to every process of the session
  void kill();                // SIGKILL to every process of the session and to the leader
  bool session_left() const;  // some process of the session is still alive

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int status_ = -1;
};

// Ends sessions now (a server's close()): hangup() each, wait up to grace_ms
// for their processes to go, kill() what is left, wait() for the leaders.
void pty_end_sessions(const std::vector<PtyLeader*>& leaders, uint32_t grace_ms);

}  // namespace moat
