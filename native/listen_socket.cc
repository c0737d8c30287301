// listen_socket.cc: the router's listening socket file (see listen_socket.h).
#include "listen_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace moat {
namespace {
std::string errno_text(const std::string& what, int e = errno) { return what + ": " + strerror(e); }
}  // namespace

bool ListenSocket::open(const std::string& path, uint32_t mode, int64_t uid, int64_t gid, std::string* err) {
  path_ = path;
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa.sun_path) {
    *err = "socket path must be 1-" + std::to_string(sizeof sa.sun_path - 1) + " bytes: " + path;
    return false;
  }
  memcpy(sa.sun_path, path.data(), path.size());
  const socklen_t salen = socklen_t(offsetof(struct sockaddr_un, sun_path) + path.size() + 1);

  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      *err = "socket path " + path + " exists and is not a socket";
      return false;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0) {
      *err = errno_text("socket");
      return false;
    }
    const int r = connect(probe, reinterpret_cast<struct sockaddr*>(&sa), salen);
    const int e = errno;
    ::close(probe);
    if (r == 0 || e == EAGAIN) {
      *err = "socket " + path + " is in use by another process";
      return false;
    }
    if (e != ECONNREFUSED) {
      *err = errno_text("probing socket " + path, e);
      return false;
    }
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      *err = errno_text("removing stale socket " + path);
      return false;
    }
  }

  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = errno_text("socket");
    return false;
  }
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), salen) != 0) {
    *err = errno_text("bind " + path);
    return false;
  }
  if (stat(path.c_str(), &st) != 0) {
    *err = errno_text("stat " + path);
    return false;
  }
  ours_ = true;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  if (chmod(path.c_str(), mode & 07777) != 0) {
    *err = errno_text("chmod " + path);
    return false;
  }
  if (uid >= 0 || gid >= 0) {
    if (chown(path.c_str(), uid >= 0 ? uid_t(uid) : uid_t(-1), gid >= 0 ? gid_t(gid) : gid_t(-1)) != 0) {
      *err = errno_text("chown " + path);
      return false;
    }
  }
  if (listen(fd, SOMAXCONN) != 0) {
    *err = errno_text("listen " + path);
    return false;
  }
  return true;
}

bool ListenSocket::current() const {
  struct stat st;
  return ours_ && lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_;
}

void ListenSocket::close() {
  if (fd >= 0) ::close(fd);
  fd = -1;
  if (current()) unlink(path_.c_str());
  ours_ = false;
}

}  // namespace moat
