// peer_identity.cc: a peer's start time (see peer_identity.h).
#include "peer_identity.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // Linux 6.5; older libc headers lack it
#endif

namespace moat {

uint64_t process_start_time(pid_t pid) {
  if (pid <= 0) return 0;
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  // "pid (comm) state ppid ...": comm holds at most 64 bytes here, any
  // character included ')' and blanks, so fields are counted after the last
  // ')'. The line is a few hundred bytes.
  char buf[1024];
  ssize_t n;
  do {
    n = read(fd, buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* p = strrchr(buf, ')');
  if (!p) return 0;
  // The blank before field N, for N = 3 (state) .. 22 (starttime).
  for (int field = 3; field <= 22; field++) {
    p = strchr(p + 1, ' ');
    if (!p) return 0;
  }
  char* end;
  errno = 0;
  const unsigned long long t = strtoull(p + 1, &end, 10);
  if (errno != 0 || end == p + 1 || (*end != ' ' && *end != '\0' && *end != '\n')) return 0;
  return t;
}

uint64_t peer_start_time(int fd, pid_t pid) {
  int pidfd = -1;
  socklen_t len = sizeof pidfd;
  const bool have_pidfd = getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0;
  // Any failure but an unknown option: the peer process is gone.
  if (!have_pidfd && errno != ENOPROTOOPT) return 0;
  const uint64_t t = process_start_time(pid);
  if (!have_pidfd) return t;
  // Signal 0 sends nothing: 0 or EPERM, the process is still there (and so
  // its number was not reused while /proc was read); ESRCH, it is gone.
  const bool alive = syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0 || errno == EPERM;
  close(pidfd);
  return alive ? t : 0;
}

}  // namespace moat
