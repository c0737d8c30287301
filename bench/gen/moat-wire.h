/*
 * moat-wire.h: the few frames a generator needs to talk to moat's router as
 * a moat device does (tun-peers.c, handoff-peer.c): the offload hello
 * (native/offload.h), waiting for the router's, and the handoff frame with
 * fds attached (native/handoff.h).
 */
#pragma once
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#define MOAT_HELLO_BYTES 42

/* The offload hello: csum, tso4, uso4, frames up to 65535. */
static void moat_hello(uint8_t *f) {
  memset(f, 0, MOAT_HELLO_BYTES);
  f[1] = 38;  /* size 38, little-endian */
  f[3] = 2;   /* kModHello */
  uint8_t *p = f + 4;
  p[0] = 0x45;
  p[3] = 38;
  p[8] = 1;
  p[9] = 253;
  memcpy(p + 20, "moat-offload", 12);
  p[32] = 1;
  p[35] = 7;
  p[36] = 0xff;
  p[37] = 0xff;
}

/* Reads frames until the router's hello (modifier2 2); its capability bits
 * (8: it takes a tun, the handoff), or -1 when none came within timeout_ms. */
static int moat_router_hello(int s, int timeout_ms) {
  uint8_t buf[4096];
  size_t have = 0;
  for (;;) {
    struct pollfd p = {s, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return -1;
    ssize_t n = read(s, buf + have, sizeof buf - have);
    if (n <= 0) return -1;
    have += (size_t)n;
    size_t off = 0;
    while (have - off >= 4) {
      size_t len = buf[off + 1] | (size_t)buf[off + 2] << 8;
      if (have - off < 4 + len) break;
      if (buf[off + 3] == 2) return len >= 36 ? (buf[off + 4 + 34] << 8 | buf[off + 4 + 35]) : 0;
      off += 4 + len;
    }
    memmove(buf, buf + off, have - off);
    have -= off;
    if (have == sizeof buf) return -1;
  }
}

/* One handoff frame ([0][0][0][4]) with count (0..2) fds attached; 0 on success. */
static int moat_send_handoff(int s, const int *fds, int count) {
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
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)count);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)count);
  }
  return sendmsg(s, &mh, MSG_NOSIGNAL) == 4 ? 0 : -1;
}
