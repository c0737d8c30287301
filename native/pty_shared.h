// pty_shared.h: the shared pty (pty-socket, docs/pty.md): one pty, one
// optional command on it, many viewers.
//
// Job: every viewer connected to the unix socket (pty_socket.h) sees the
// pty's output, and input from any viewer reaches the pty (raw bytes, as
// uWSGI's pty-socket). A new viewer first gets the recent output
// (scrollback). The command, if one is given, runs on the pty as a session of
// its own (pty_process.h); the embedder may instead attach a process of its
// own to slave_fd() (the vassal runtime's pty-daemon). When the command
// exits, the rest of its session gets SIGHUP; close() hangs it up and kills
// what is left after a second.
//
// Limits: max_viewers at once (more are accepted and closed at once); a
// viewer that falls queue_bytes behind is disconnected; input beyond
// queue_bytes waiting for the pty is dropped. Output is relayed as it comes,
// no lengths are read from the wire.
//
// Threads: as PtyServer (pty_router.h): embedded (open, handle, close) or on
// a thread of its own (start, stop).
//
// Syscalls: those of pty_socket.h and pty_process.h, and epoll_ctl,
// epoll_wait, read, write, send, close.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "pty_common.h"
#include "pty_process.h"
#include "pty_socket.h"

namespace moat {

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
  ~SharedPty();  // stop()
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
  PtyThread thread_;
};

}  // namespace moat
