/*
 * handoff-peer.c: a peer that hands the router something other than a moat
 * device's tun (test/integration/handoff.test.ts). JavaScript cannot send
 * an fd over a unix stream socket; this does, as a hostile tenant could.
 *
 *   handoff-peer SOCKET KIND
 *
 * Connects, sends an offload hello (native/offload.h), waits for the
 * router's, then sends one handoff frame ([0][0][0][4], native/handoff.h)
 * carrying, by KIND:
 *   pipe      the read end of a pipe
 *   devnull   /dev/null
 *   tunplain  a tun opened without IFF_VNET_HDR (not a moat device's)
 *   two       two pipes' read ends at once
 *   none      no fd at all
 *   early     no hello first: the handoff frame with a pipe, unoffered
 * and prints "closed" when the router closes the connection (or "open"
 * after 3 s). Exit 0 either way; 2 on a setup failure.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int die(const char* what) {
  perror(what);
  return 2;
}

static void hello(uint8_t* f) {
  memset(f, 0, 42);
  f[1] = 38;  /* size 38, little-endian */
  f[3] = 2;   /* kModHello */
  uint8_t* p = f + 4;
  p[0] = 0x45;
  p[3] = 38;
  p[8] = 1;
  p[9] = 253;
  memcpy(p + 20, "moat-offload", 12);
  p[32] = 1;
  p[35] = 7;     /* csum, tso4, uso4 */
  p[36] = 0xff;  /* max frame 65535 */
  p[37] = 0xff;
}

/* Reads until the router's hello (frame modifier2 2) has come; 0 on success. */
static int await_hello(int s) {
  uint8_t buf[4096];
  size_t have = 0;
  for (;;) {
    struct pollfd p = {s, POLLIN, 0};
    if (poll(&p, 1, 3000) <= 0) return -1;
    ssize_t n = read(s, buf + have, sizeof buf - have);
    if (n <= 0) return -1;
    have += (size_t)n;
    size_t off = 0;
    while (have - off >= 4) {
      size_t len = buf[off + 1] | (buf[off + 2] << 8);
      if (have - off < 4 + len) break;
      if (buf[off + 3] == 2) return 0;
      off += 4 + len;
    }
    memmove(buf, buf + off, have - off);
    have -= off;
    if (have == sizeof buf) return -1;
  }
}

static int send_fds(int s, const int* fds, int count) {
  uint8_t frame[4] = {0, 0, 0, 4};
  struct iovec iov = {frame, sizeof frame};
  union {
    char buf[CMSG_SPACE(sizeof(int) * 2)];
    struct cmsghdr align;
  } u;
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  memset(&u, 0, sizeof u);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (count > 0) {
    mh.msg_control = u.buf;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)count);
    struct cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)count);
  }
  return sendmsg(s, &mh, MSG_NOSIGNAL) == 4 ? 0 : -1;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: handoff-peer SOCKET pipe|devnull|tunplain|two|none|early\n");
    return 2;
  }
  const char* kind = argv[2];
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", argv[1]);
  if (s < 0 || connect(s, (struct sockaddr*)&sa, sizeof sa) != 0) return die("connect");
  if (strcmp(kind, "early") != 0) {
    uint8_t f[42];
    hello(f);
    if (write(s, f, sizeof f) != (ssize_t)sizeof f) return die("write hello");
    if (await_hello(s) != 0) {
      fprintf(stderr, "no hello from the router\n");
      return 2;
    }
  }
  int fds[2] = {-1, -1}, count = 1, p[2], q[2];
  if (!strcmp(kind, "pipe") || !strcmp(kind, "early")) {
    if (pipe(p) != 0) return die("pipe");
    fds[0] = p[0];
  } else if (!strcmp(kind, "devnull")) {
    fds[0] = open("/dev/null", O_RDWR);
  } else if (!strcmp(kind, "tunplain")) {
    fds[0] = open("/dev/net/tun", O_RDWR);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    if (fds[0] < 0 || ioctl(fds[0], TUNSETIFF, &ifr) != 0) return die("tun");
  } else if (!strcmp(kind, "two")) {
    if (pipe(p) != 0 || pipe(q) != 0) return die("pipe");
    fds[0] = p[0];
    fds[1] = q[0];
    count = 2;
  } else if (!strcmp(kind, "none")) {
    count = 0;
  } else {
    fprintf(stderr, "unknown kind %s\n", kind);
    return 2;
  }
  if (count > 0 && fds[0] < 0) return die("open");
  if (send_fds(s, fds, count) != 0) return die("sendmsg");
  /* The router closes a peer that hands over anything but a moat tun. */
  uint8_t buf[4096];
  for (;;) {
    struct pollfd pl = {s, POLLIN, 0};
    if (poll(&pl, 1, 3000) <= 0) {
      printf("open\n");
      return 0;
    }
    ssize_t n = read(s, buf, sizeof buf);
    if (n <= 0) break;
  }
  printf("closed\n");
  return 0;
}
