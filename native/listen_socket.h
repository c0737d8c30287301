// listen_socket.h: the router's listening unix stream socket and its file.
// Opening replaces a stale file (a socket nobody listens on) and refuses a
// live socket or any other file; the file gets its mode and owner before
// listen(), so no peer connects before they are set. Closing removes the
// file only if it is still the one bound here (same device and inode): a
// file someone else put at the path is never removed.
//
// Threads: one at a time (the router's loop thread). No ownership magic: the
// caller closes. Limits: a path of 1..107 bytes (sun_path).
// Syscalls: lstat, stat, socket, connect (probing an existing socket),
// unlink, bind, chmod, chown, listen, close.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>

namespace moat {

struct ListenSocket {
  int fd = -1;  // non-blocking, close-on-exec; -1 when closed

  // Binds and listens at path. uid/gid: the file's owner (-1 keeps). false
  // with *err; what was made until then is undone by close().
  bool open(const std::string& path, uint32_t mode, int64_t uid, int64_t gid, std::string* err);
  // Whether the path still names the socket bound here.
  bool current() const;
  // The file is no longer ours to remove (close() leaves it).
  void disown() { ours_ = false; }
  // Closes the fd and removes the file if it is still ours.
  void close();

 private:
  std::string path_;
  bool ours_ = false;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace moat
