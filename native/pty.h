// pty.h: pseudo-terminal servers and the terminal client, in uWSGI 2.0's
// forkpty-router / pty wire formats (docs/pty.md).
//
// Job:
//  - PtyServer (forkpty-router, forkpty-urouter): listens on a unix stream
//    socket; every connection gets a new pty and a new process (its own
//    session, the pty as controlling terminal) running the configured command.
//    Raw mode passes bytes straight through both ways. Framed mode reads uwsgi
//    frames from the client: modifier2 0 = stdin bytes (payload), 1..99 = send
//    that signal to the pty's foreground process group, 100 = rows := size
//    field, 101 = cols := size field (TIOCSWINSZ; the kernel sends SIGWINCH);
//    other modifier2 values are ignored. Output goes back as plain bytes.
//  - SharedPty (pty-socket): one pty, one optional command on it, many
//    viewers: every viewer sees the output, input from any viewer reaches the
//    pty (raw bytes, as uWSGI's pty-socket).
//  - pty_client (pty-connect, pty-uconnect): the local terminal in raw mode
//    connected to such a server; restores the terminal on every way out.
//
// Ending a session (uWSGI leaves processes behind; moat does not): when the
// client disconnects, the master is closed (the kernel hangs up the tty) and
// every process whose session id is the session's (found in /proc) gets
// SIGHUP and SIGCONT, then SIGKILL after hangup_grace_ms. When the session's
// first process exits, the rest of its session gets the same treatment, the
// output still buffered in the pty is sent, and the connection is closed.
// A process that calls setsid() itself leaves the session and is not found
// (inside a vassal, the vassal's pid namespace and stop cover it).
//
// Limits: unix sockets only; max_sessions connections at once (more are
// accepted and closed at once); each direction buffers at most queue_bytes
// before it stops reading its source (backpressure, nothing dropped), except
// SharedPty viewers, which are disconnected when they fall queue_bytes behind.
// Every length from the wire is untrusted: frames are parsed as a stream
// (payloads are never buffered whole), so no frame size needs a buffer.
//
// Threading: neither server starts a thread of its own unless asked to.
// Embedded use (a single-threaded program's epoll loop): open(), add fd() to
// the loop for EPOLLIN, call handle() whenever it is readable (it never
// blocks), close() at the end. Thread use: start() = open() + a thread that
// waits on fd() and calls handle(); stop() joins it. Events reach the sink on
// whichever thread runs handle(). Children are forked from that thread and
// reset their signal mask and dispositions before exec. Session leaders are
// reaped through pidfds (waitid P_PIDFD); if the embedding program reaps them
// first (a pid-1 reaper calling waitpid(-1)), the exit status is unknown (-1).
//
// Syscalls: socket (AF_UNIX, SOCK_STREAM), bind, listen, accept4, connect,
// getsockopt (SO_PEERCRED), fchmod/chmod, chown, unlink, lstat, epoll_create1,
// epoll_ctl, epoll_wait, eventfd, timerfd_create, timerfd_settime, read,
// write, send (MSG_NOSIGNAL), close, posix_openpt (open /dev/ptmx), ioctl
// (TIOCSPTLCK, TIOCGPTPEER, TIOCSCTTY, TIOCSWINSZ, TIOCGWINSZ, TIOCGPGRP),
// fork, setsid, dup2, close_range, sigaction, sigprocmask, setgroups, setgid,
// setuid, chdir, execve, pidfd_open, waitid, kill, open/read of /proc/N/stat,
// tcgetattr, tcsetattr, signalfd, poll.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace moat {

// Where a server listens and who may connect.
struct PtySocketOptions {
  std::string path;          // unix socket path; a stale socket file is replaced, a live one refused
  uint32_t mode = 0600;      // chmod before listen(): nobody else can connect in between
  int64_t uid = -1;          // chown of the socket file; -1 keeps
  int64_t gid = -1;
};

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

struct PtyServerOptions {
  PtySocketOptions socket;
  PtyCommandOptions session;
  bool framed = false;           // forkpty-urouter (true) or forkpty-router (false)
  uint32_t max_sessions = 64;
  size_t queue_bytes = 65536;    // per direction per session
  uint32_t hangup_grace_ms = 1000;  // SIGHUP -> SIGKILL
};

struct PtyEvent {
  enum class Type { SessionStart, SessionEnd, Refused, Error };
  PtyEvent() = default;
  explicit PtyEvent(Type t) : type(t) {}
  Type type = Type::Error;
  uint64_t session = 0;      // session id (from 1)
  pid_t pid = 0;             // SessionStart/End: the session's first process
  int64_t peer_uid = -1, peer_pid = -1;  // SessionStart/Refused: SO_PEERCRED of the client
  int status = -1;           // SessionEnd: wait status of the first process (-1 unknown)
  std::string text;          // SessionEnd: why ("client closed", "process exited", "server stopped");
                             // Refused: why; Error: the message
};

using PtyEventSink = std::function<void(std::vector<PtyEvent>&&)>;

struct PtyServerStats {
  uint64_t sessions_started = 0, sessions_ended = 0, refused = 0;
  uint64_t active = 0;
  uint64_t bytes_in = 0, bytes_out = 0;  // client -> pty (stdin bytes), pty -> client
  uint64_t signals = 0, resizes = 0, ignored_frames = 0;
};

// The forkpty router.
class PtyServer {
 public:
  explicit PtyServer(PtyServerOptions opts);
  ~PtyServer();  // close()
  PtyServer(const PtyServer&) = delete;
  PtyServer& operator=(const PtyServer&) = delete;

  // Binds and listens. False with *err ("bind /run/x.sock: Address already
  // in use") on failure. `sink` may be empty.
  bool open(PtyEventSink sink, std::string* err);
  // An epoll fd: readable when handle() has work. -1 before open().
  int fd() const { return epfd_; }
  // Does all pending work without blocking: accepts, forwards, reaps, kills.
  void handle();
  // Hangs up every session (SIGHUP, then SIGKILL for what is left after the
  // grace; this call waits up to hangup_grace_ms for that), removes the
  // socket file, closes every fd. Idempotent.
  void close();

  // Thread use: open() then a thread running handle(); stop() = join + close().
  bool start(PtyEventSink sink, std::string* err);
  void stop();

  PtyServerStats stats() const;

 private:
  struct Session;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int epfd_ = -1;
  std::thread thread_;
  int stop_fd_ = -1;
};

struct SharedPtyOptions {
  PtySocketOptions socket;
  PtyCommandOptions command;     // command.command empty: no process is started (the embedder attaches one via slave_fd())
  uint32_t max_viewers = 16;
  size_t queue_bytes = 262144;   // per viewer; a viewer this far behind is disconnected
  size_t scrollback_bytes = 16384;  // recent output replayed to a new viewer
};

// pty-socket: one shared pty.
class SharedPty {
 public:
  explicit SharedPty(SharedPtyOptions opts);
  ~SharedPty();
  SharedPty(const SharedPty&) = delete;
  SharedPty& operator=(const SharedPty&) = delete;

  // Opens the pty, binds and listens, starts the command if one is given.
  // Events: SessionStart/End = a viewer came/went (session = viewer id);
  // SessionEnd with pid != 0 = the command exited (status = wait status).
  bool open(PtyEventSink sink, std::string* err);
  int fd() const { return epfd_; }
  void handle();
  void close();      // as PtyServer::close (the command's session is hung up)
  bool start(PtyEventSink sink, std::string* err);
  void stop();

  // The pty's slave side (O_CLOEXEC; dup2 it onto a process's 0/1/2 and make
  // it the controlling terminal with setsid + TIOCSCTTY), -1 before open().
  int slave_fd() const;
  pid_t command_pid() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int epfd_ = -1;
  std::thread thread_;
  int stop_fd_ = -1;
};

// Spawns COMMAND on a new pty slave: the child makes a new session, takes
// `slave` as its controlling terminal and stdio, drops privileges, execs.
// Returns the pid, or -1 with *err. Exposed for the vassal runtime.
pid_t pty_spawn(int slave, const PtyCommandOptions& o, std::string* err);

// Signals every live process whose session id is `sid` (scans /proc; zombies
// are skipped: they have exited). Returns how many were signalled. /proc must
// be the one of the caller's pid namespace.
int pty_signal_session(pid_t sid, int sig);

struct PtyClientOptions {
  std::string path;          // the server's unix socket
  bool framed = false;       // pty-uconnect (true) or pty-connect (false)
  int in_fd = 0, out_fd = 1;
};

// The client: raw mode on in_fd if it is a terminal (restored on every way
// out, including SIGTERM/SIGINT/SIGHUP/SIGQUIT, which end the client), window
// size sent at start and on SIGWINCH (framed), bytes both ways, until the
// server closes the connection. Blocks. Returns the exit code: 0 when the
// server ended the session, 1 on errors (message in *err), 128+N on signal N.
// Blocks those signals and SIGWINCH in the calling thread while it runs.
int pty_client(const PtyClientOptions& o, std::string* err);

}  // namespace moat
