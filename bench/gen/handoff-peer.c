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

#include "moat-wire.h"

static int die(const char* what) {
  perror(what);
  return 2;
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
    uint8_t f[MOAT_HELLO_BYTES];
    moat_hello(f);
    if (write(s, f, sizeof f) != (ssize_t)sizeof f) return die("write hello");
    if (moat_router_hello(s, 3000) < 0) {
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
  if (moat_send_handoff(s, fds, count) != 0) return die("sendmsg");
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
