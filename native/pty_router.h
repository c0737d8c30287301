// pty_router.h: the forkpty router (forkpty-router, forkpty-urouter), in
// uWSGI 2.0's wire formats (docs/pty.md).
//
// Job: listens on a unix stream socket (pty_socket.h); every connection gets
// a new pty and a new process (its own session, the pty as controlling
// terminal) running the configured command (pty_process.h). Raw mode passes
// bytes straight through both ways. Framed mode reads uwsgi frames from the
// client: modifier2 0 = stdin bytes (payload), 1..99 = send that signal to
// the pty's foreground process group, 100 = rows := size field, 101 = cols :=
// size field (TIOCSWINSZ; the kernel sends SIGWINCH); other modifier2 values
// are ignored. Output goes back as plain bytes.
//
// Ending a session: when the client disconnects, the master is closed (the
// kernel hangs up the tty) and the session is hung up (SIGHUP, SIGKILL after
// hangup_grace_ms, pty_process.h). When the session's first process exits,
// the rest of its session gets the same treatment, the output still buffered
// in the pty is sent, and the connection is closed.
//
// Limits: max_sessions connections at once (more are accepted and closed at
// once); each direction buffers at most queue_bytes before it stops reading
// its source (backpressure, nothing dropped). Every length from the wire is
// untrusted: frames are parsed as a stream (payloads are never buffered
// whole), so no frame size needs a buffer.
//
// Threads: none of its own unless asked to. Embedded use (a single-threaded
// program's epoll loop): open(), add fd() to the loop for EPOLLIN, call
// handle() whenever it is readable (it never blocks), close() at the end.
// Thread use: start() = open() + a thread that waits on fd() and calls
// handle() (pty_common.h); stop() joins it. Events reach the sink on
// whichever thread runs handle().
//
// Syscalls: those of pty_socket.h and pty_process.h, and epoll_ctl,
// epoll_wait, timerfd_create, timerfd_settime, read, write, send, close,
// ioctl (TIOCSWINSZ, TIOCGPGRP), kill.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "pty_common.h"
#include "pty_process.h"
#include "pty_socket.h"

namespace moat {

struct PtyServerOptions {
  PtySocketOptions socket;
  PtyCommandOptions session;
  bool framed = false;           // forkpty-urouter (true) or forkpty-router (false)
  uint32_t max_sessions = 64;
  size_t queue_bytes = 65536;    // per direction per session
  uint32_t hangup_grace_ms = 1000;  // SIGHUP -> SIGKILL
};

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
  ~PtyServer();  // stop()
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
  PtyThread thread_;
};

}  // namespace moat
