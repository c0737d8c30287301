// pty_socket.cc: the pty servers' listening socket, made without following a
// path a tenant controls (pty_socket.h says how, its limits and its syscalls).
#include "pty_socket.h"

#include "path_walk.h"

#include <fcntl.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "pty_common.h"

namespace moat {

namespace {

// "/proc/self/fd/FD[/NAME]": the file fd refers to (or NAME in that
// directory) by a path that no rename or symlink elsewhere can redirect.
std::string fd_path(int fd, const std::string& name = std::string()) {
  std::string p = "/proc/self/fd/" + std::to_string(fd);
  return name.empty() ? p : p + "/" + name;
}

bool to_sockaddr(const std::string& path, sockaddr_un* sa) {
  *sa = sockaddr_un{};
  sa->sun_family = AF_UNIX;
  if (path.size() >= sizeof(sa->sun_path)) return false;
  std::memcpy(sa->sun_path, path.c_str(), path.size() + 1);
  return true;
}

uid_t fsuid_now() { return uid_t(::setfsuid(uid_t(-1))); }  // -1 changes nothing
gid_t fsgid_now() { return gid_t(::setfsgid(gid_t(-1))); }

// Opens the directory part of `path` one component at a time with
// O_NOFOLLOW, from / (a relative path: from the working directory): a
// symlink on the way is refused, never followed; so is `..`. Sets *name to
// the last component. Returns an O_PATH fd, or -1 with *err.
int open_parent(const std::string& path, std::string* name, std::string* err) {
  const size_t slash = path.rfind('/');
  *name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name->empty() || *name == "." || *name == "..") {
    *err = "socket path '" + path + "' names no file";
    return -1;
  }
  const std::string parent = slash == std::string::npos ? "" : slash == 0 ? "/" : path.substr(0, slash);
  const WalkResult w = open_dir_nofollow(parent);
  switch (w.error) {
    case WalkError::None: return w.fd;
    case WalkError::DotDot: *err = "bind " + path + ": '..' in a socket path is refused"; return -1;
    case WalkError::Link:
      *err = "bind " + path + ": " + w.walked + " is a symlink or not a directory (refused: a socket's path follows no link)";
      return -1;
    default:
      errno = w.errno_value;
      *err = pty_errtext("bind " + path + " (directory " + w.walked + ")");
      return -1;
  }
}

// Makes room for NAME in dir: nothing there, or a stale socket (removed).
// A live socket or any other file (a symlink too) is refused. The file is
// looked at through an O_PATH|O_NOFOLLOW fd and probed through /proc/self/fd.
bool clear_stale(int dir, const std::string& name, const std::string& path, std::string* err) {
  int f = ::openat(dir, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (f < 0) {
    if (errno == ENOENT) return true;
    *err = pty_errtext("bind " + path);
    return false;
  }
  struct stat st{};
  const bool sock = ::fstat(f, &st) == 0 && S_ISSOCK(st.st_mode);
  bool live = false;
  sockaddr_un sa;
  if (sock && to_sockaddr(fd_path(f), &sa)) {
    // Non-blocking: a listener that never accepts cannot hold us (EAGAIN: it is live).
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    live = probe >= 0 && (::connect(probe, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0 || errno == EAGAIN);
    if (probe >= 0) ::close(probe);
  }
  ::close(f);
  if (!sock) {
    *err = path + " exists and is not a socket";
    return false;
  }
  if (live) {
    *err = path + ": a server is already listening there";
    return false;
  }
  ::unlinkat(dir, name.c_str(), 0);  // whatever the name holds by now: the entry goes, nothing is followed
  return true;
}

// bind() with this thread's fsuid/fsgid set to uid/gid (-1: unchanged), so
// that the kernel creates the file with that owner; restored before return.
int bind_as(int fd, const sockaddr_un& sa, int64_t uid, int64_t gid) {
  const uid_t old_uid = fsuid_now();
  const gid_t old_gid = fsgid_now();
  if (gid >= 0) ::setfsgid(gid_t(gid));
  if (uid >= 0) ::setfsuid(uid_t(uid));
  const bool took = (gid < 0 || fsgid_now() == gid_t(gid)) && (uid < 0 || fsuid_now() == uid_t(uid));
  int rc = -1, e = EPERM;
  if (took) {
    rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa));
    e = errno;
  }
  ::setfsuid(old_uid);
  ::setfsgid(old_gid);
  if (fsuid_now() != old_uid || fsgid_now() != old_gid) {
    std::fprintf(stderr, "moat: cannot restore this thread's fsuid/fsgid\n");  // cannot happen: the old ids are always allowed back
    std::abort();
  }
  errno = e;
  return rc;
}

// Removes NAME from dir if it is the file dev/ino.
void unlink_if(int dir, const std::string& name, dev_t dev, ino_t ino) {
  struct stat st{};
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == dev && st.st_ino == ino)
    ::unlinkat(dir, name.c_str(), 0);
}

}  // namespace

bool PtyListenSocket::open(const PtySocketOptions& o, std::string* err) {
  if (fd_ >= 0) {
    *err = "already open";
    return false;
  }
  const std::string& path = o.path;
  std::string name;
  int dir = open_parent(path, &name, err);
  if (dir < 0) return false;
  const std::string tmp = name + ".new";
  sockaddr_un sa;
  if (!to_sockaddr(fd_path(dir, tmp), &sa)) {
    *err = "bind " + path + ": the file name '" + name + "' is too long";
    ::close(dir);
    return false;
  }
  if (!clear_stale(dir, name, path, err)) {
    ::close(dir);
    return false;
  }
  ::unlinkat(dir, tmp.c_str(), 0);  // a leftover of a crash; ours by name
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = pty_errtext("socket");
    ::close(dir);
    return false;
  }
  // Created as its owner; if the owner may not create files here, as we are
  // (and given its owner below, through the checked fd).
  const bool owned = o.uid >= 0 || o.gid >= 0;
  uid_t made_by = o.uid >= 0 ? uid_t(o.uid) : fsuid_now();
  int rc = owned ? bind_as(fd, sa, o.uid, o.gid) : -1;
  if (!owned || (rc != 0 && (errno == EACCES || errno == EPERM))) {
    made_by = fsuid_now();
    rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa));
  }
  if (rc != 0) {
    *err = pty_errtext("bind " + path);
    ::close(fd);
    ::close(dir);
    return false;
  }
  // From here on the tenant may have put anything under the new name: what
  // is changed is what fstat of an O_PATH|O_NOFOLLOW fd showed to be ours.
  struct stat st{};
  bool ours = false;
  std::string why;
  int f = ::openat(dir, tmp.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (f < 0 || ::fstat(f, &st) != 0) {
    why = pty_errtext("open " + tmp);
  } else if (!S_ISSOCK(st.st_mode) || st.st_nlink != 1 || st.st_uid != made_by) {
    why = tmp + " was replaced while being set up (refused)";
  } else {
    ours = true;
    const bool chown = (o.uid >= 0 && st.st_uid != uid_t(o.uid)) || (o.gid >= 0 && st.st_gid != gid_t(o.gid));
    struct stat now{};
    if (chown && ::fchownat(f, "", o.uid >= 0 ? uid_t(o.uid) : uid_t(-1), o.gid >= 0 ? gid_t(o.gid) : gid_t(-1),
                            AT_EMPTY_PATH) != 0) {
      why = pty_errtext("chown");
    } else if (::chmod(fd_path(f).c_str(), o.mode & 07777) != 0) {
      why = pty_errtext("chmod");
    } else if (::listen(fd, 64) != 0) {
      why = pty_errtext("listen");
    } else if (::renameat(dir, tmp.c_str(), dir, name.c_str()) != 0) {
      why = pty_errtext("rename " + tmp + " to " + name);
    } else if (::fstatat(dir, name.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0 || now.st_dev != st.st_dev ||
               now.st_ino != st.st_ino) {
      why = name + " was replaced while being set up (refused)";
    }
  }
  if (f >= 0) ::close(f);
  if (!why.empty()) {
    *err = "bind " + path + ": " + why;
    if (ours) unlink_if(dir, tmp, st.st_dev, st.st_ino);
    ::close(fd);
    ::close(dir);
    return false;
  }
  fd_ = fd;
  dir_ = dir;
  name_ = name;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  return true;
}

int PtyListenSocket::accept(int64_t* peer_uid, int64_t* peer_pid) {
  *peer_uid = *peer_pid = -1;
  int c = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (c < 0) return -1;
  ucred cr{};
  socklen_t len = sizeof(cr);
  if (::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0) {
    *peer_uid = cr.uid;
    *peer_pid = cr.pid;
  }
  return c;
}

void PtyListenSocket::close() {
  if (fd_ < 0) return;
  pty_close(fd_);
  unlink_if(dir_, name_, dev_, ino_);
  pty_close(dir_);
}

}  // namespace moat
