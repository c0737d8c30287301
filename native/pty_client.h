// pty_client.h: the terminal client (pty-connect, pty-uconnect) of a pty
// server (pty_router.h, pty_shared.h; docs/pty.md).
//
// Job: the local terminal in raw mode connected to the server's unix socket:
// bytes both ways until the server closes the connection; in framed mode the
// input goes as stdin frames and the window size as rows/cols frames, at
// start and on every SIGWINCH. The terminal is restored on every way out,
// including SIGTERM/SIGINT/SIGHUP/SIGQUIT, which end the client.
//
// Limits: unix sockets only (a path of at most 107 bytes); one stdin frame
// per read of the terminal (at most 8192 bytes).
// Threads: blocks the calling thread; those signals are unblocked in it while
// it runs and handled through a pipe (the handler writes a byte), so it works
// whichever thread the kernel picks. The client runs as its user: it never
// acts on a path for anyone else.
// Syscalls: socket, connect, pipe2, sigaction, pthread_sigmask, poll, read,
// write, send (MSG_NOSIGNAL), ioctl (TIOCGWINSZ), tcgetattr, tcsetattr,
// isatty, close.
#pragma once
#include <string>

namespace moat {

struct PtyClientOptions {
  std::string path;          // the server's unix socket
  bool framed = false;       // pty-uconnect (true) or pty-connect (false)
  int in_fd = 0, out_fd = 1;
};

// Returns the exit code: 0 when the server ended the session, 1 on errors
// (message in *err), 128+N on signal N.
int pty_client(const PtyClientOptions& o, std::string* err);

}  // namespace moat
