// pty_socket.h: the pty servers' listening unix socket, made by a process
// that may be root in a directory a tenant can write (a vassal's directory,
// bind-mounted at /run/moat in the vassal).
//
// Job: bind PATH with its owner and mode, listen, and only then make it
// visible under PATH (bound as PATH.new, renamed into place), so nobody ever
// connects to it with other permissions; replace a stale socket, refuse a
// live one or any other file; accept connections with the peer's
// credentials; at the end, remove PATH if it is still the socket bound.
//
// Root never follows a path the tenant controls: the directory is opened one
// component at a time with O_NOFOLLOW (a symlink or `..` anywhere in PATH is
// refused) and held as an fd for the server's life; every later step goes
// through that fd: unlinkat/renameat on it, bind and connect through
// /proc/self/fd/DIR/NAME (the kernel resolves that to the directory held,
// whatever it is called by then, and bind never follows a final symlink);
// the owner comes from creating the socket with this thread's fsuid/fsgid
// set to it (restored at once; both are per-thread on Linux), so no chown
// follows a name; the mode is set through an O_PATH|O_NOFOLLOW fd of the new
// name after fstat showed a socket with one link, owned as created, else the
// set-up is refused and reported. When the owner may not create files in the
// directory, the socket is made with the caller's ids and given its owner
// through that same checked fd. Whatever the tenant swaps in, root's
// operations stay inside the directory opened.
//
// Limits: AF_UNIX stream sockets; the file name plus ".new" must fit in
// sun_path after "/proc/self/fd/N/" (about 80 bytes); /proc must be mounted.
// Threads: any; open() changes the calling thread's fsuid/fsgid for the
// duration of one bind().
// Syscalls: open/openat (O_PATH, O_NOFOLLOW, O_DIRECTORY), fstat, fstatat,
// socket, bind, connect, listen, accept4, getsockopt (SO_PEERCRED), chmod
// (of /proc/self/fd/N), fchownat (AT_EMPTY_PATH), setfsuid, setfsgid,
// unlinkat, renameat, close.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>

namespace moat {

// Where a server listens and who may connect.
struct PtySocketOptions {
  std::string path;          // unix socket path; a stale socket file is replaced, a live one refused
  uint32_t mode = 0600;      // set before listen(): nobody else can connect in between
  int64_t uid = -1;          // owner of the socket file; -1 keeps
  int64_t gid = -1;
};

class PtyListenSocket {
 public:
  PtyListenSocket() = default;
  PtyListenSocket(const PtyListenSocket&) = delete;
  PtyListenSocket& operator=(const PtyListenSocket&) = delete;
  ~PtyListenSocket() { close(); }

  // Binds and listens (non-blocking, close-on-exec). False with *err
  // ("bind /run/x.sock: ...") on failure; nothing is left behind then.
  bool open(const PtySocketOptions& o, std::string* err);
  int fd() const { return fd_; }
  // One pending connection (non-blocking, close-on-exec) and its peer's
  // SO_PEERCRED uid and pid (-1 unknown); -1 with errno when there is none.
  int accept(int64_t* peer_uid, int64_t* peer_pid);
  // Closes it and removes PATH if it is still the socket bound. Idempotent.
  void close();

 private:
  int fd_ = -1;
  int dir_ = -1;             // the directory, O_PATH
  std::string name_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace moat
