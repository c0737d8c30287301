// handoff.cc: passing a vassal's tun fd from device to router (handoff.h).
#include "handoff.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>

#include "frame.h"
#include "gso.h"

namespace moat {
namespace {
constexpr int kFdRoom = 4;  // fds a control buffer takes; all but the first are closed

// A message of one buffer and a control buffer.
struct msghdr message(struct iovec* iov, char* control, size_t control_len) {
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = control_len;
  return mh;
}
}  // namespace

ssize_t recv_with_fd(int sock, uint8_t* buf, size_t len, int* fd, FdCloser* closer) {
  *fd = -1;
  struct iovec iov = {buf, len};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kFdRoom)];
  struct msghdr mh = message(&iov, control, sizeof control);
  const ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n < 0) return n;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int f;
      memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
      if (*fd < 0) *fd = f;
      else closer->close_later(f);
    }
  }
  return n;
}

int send_handoff(int sock, int fd) {
  uint8_t hdr[kFrameHeaderSize];
  encode_frame_header(hdr, 0, kModHandoff);
  struct iovec iov = {hdr, sizeof hdr};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  memset(control, 0, sizeof control);
  struct msghdr mh = message(&iov, control, sizeof control);
  struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  for (;;) {
    const ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == ssize_t(sizeof hdr)) return 0;
    if (n < 0 && errno == EINTR) continue;
    // A unix stream socket takes a 4-byte message whole or not at all.
    return n < 0 ? errno : EIO;
  }
}

bool tun_handoff_check(int fd, std::string* why) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 10 || minor(st.st_rdev) != 200) {
    *why = "not a tun device";
    return false;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  if (ioctl(fd, TUNGETIFF, &ifr) != 0) {
    *why = "a tun fd with no device attached";
    return false;
  }
  const int want = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
  if ((ifr.ifr_flags & (IFF_TUN | IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE)) != want) {
    *why = "a tun not opened as a moat device's (IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)";
    return false;
  }
  int hdr = 0;
  if (ioctl(fd, TUNGETVNETHDRSZ, &hdr) != 0 || hdr != int(kVnetHdrLen)) {
    *why = "a tun whose virtio-net header is not 10 bytes";
    return false;
  }
  const int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    *why = std::string("fcntl: ") + strerror(errno);
    return false;
  }
  return true;
}

}  // namespace moat
