/*
 * tun-peers.c: many moat vassals with one hop, in one process, for the
 * router's scale bench (bench/scale.ts --handoff). As a moat device does
 * by default (docs/one-hop.md), each of --count peers creates a tun device
 * (IFF_TUN | IFF_NO_PI | IFF_VNET_HDR, 10-byte header) in this namespace
 * with the address --base + i/16, connects to the router's socket, sends an
 * offload hello (native/offload.h), and once the router's hello offers the
 * handoff (capability bit 8) hands the tun's fd over ([0][0][0][4] with
 * SCM_RIGHTS, native/handoff.h). From then on the router reads and writes
 * the tun itself. Each peer then sends one UDP datagram from its address
 * (a socket bound to it and to its device) to --gw port 9, so the router
 * learns the address; and one UDP socket on --port counts the datagrams
 * with the 4-byte --tag payload that the kernel delivers to any of the
 * addresses (what bench/gen/flood.c sends), per address (IP_PKTINFO).
 *
 *   tun-peers --socket PATH --count N --base IP --gw IP --port P --tag T
 *             [--duration S] [--idle S]
 *
 * Output as bench/gen/peers.c: {"ready":true,"peers":N} on stderr once
 * every peer has handed its tun over and sent its datagram, then
 * {"received":..,"elapsed":..,"pps":..,"peers_hit":..} on stdout.
 * Needs CAP_NET_ADMIN (tun devices, addresses) and rp_filter off in the
 * namespace (N devices share one prefix). Limits: N <= 5000. Syscalls:
 * setrlimit, open, ioctl, socket, setsockopt, bind, connect, write, read,
 * poll, sendmsg, sendto, recvmmsg, clock_gettime, close.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "moat-wire.h"
#include "peers-args.h"

#define MAX_PEERS 5000
#define BATCH 64

/* A tun device named name, up, with address addr/16. */
static int make_tun(int ctl, const char *name, uint32_t addr) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) die("open /dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) die("TUNSETIFF");
  int hdr = 10;
  if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) != 0) die("TUNSETVNETHDRSZ");
  struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
  memset(&ifr.ifr_addr, 0, sizeof ifr.ifr_addr);
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(addr);
  if (ioctl(ctl, SIOCSIFADDR, &ifr) != 0) die("SIOCSIFADDR");
  sin->sin_addr.s_addr = htonl(0xffff0000u);
  if (ioctl(ctl, SIOCSIFNETMASK, &ifr) != 0) die("SIOCSIFNETMASK");
  if (ioctl(ctl, SIOCGIFFLAGS, &ifr) != 0) die("SIOCGIFFLAGS");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(ctl, SIOCSIFFLAGS, &ifr) != 0) die("SIOCSIFFLAGS");
  return fd;
}

/* One datagram from addr (out of device name) to gw port 9: the router
 * learns the address from the first packet it reads from the tun. */
static void announce(const char *name, uint32_t addr, uint32_t gw) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket (announce)");
  if (setsockopt(s, SOL_SOCKET, SO_BINDTODEVICE, name, (socklen_t)strlen(name)) != 0) die("SO_BINDTODEVICE");
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(addr)};
  if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) die("bind (announce)");
  struct sockaddr_in d = {.sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(gw)};
  if (sendto(s, "hi", 2, 0, (struct sockaddr *)&d, sizeof d) != 2) die("sendto (announce)");
  close(s);
}

int main(int argc, char **argv) {
  struct peers_args a;
  if (!peers_args_parse(argc, argv, "tun-peers", MAX_PEERS, &a)) return 1;
  const int count = a.count, port = a.port;
  const uint32_t tag = a.tag, base = a.base, gw = a.gw;
  const double duration = a.duration, idle = a.idle;
  struct sockaddr_un sa;
  if (!peers_prepare(&a, 2, &sa)) return 1;

  /* The receiving socket first: nothing the flood sends is missed. */
  int rx = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (rx < 0) die("socket (receive)");
  int on = 1, rcvbuf = 8 << 20;
  if (setsockopt(rx, IPPROTO_IP, IP_PKTINFO, &on, sizeof on) != 0) die("IP_PKTINFO");
  setsockopt(rx, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (bind(rx, (struct sockaddr *)&any, sizeof any) != 0) die("bind (receive)");

  int ctl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (ctl < 0) die("socket (ioctl)");
  int *conns = calloc((size_t)count, sizeof *conns);
  uint64_t *hits = calloc((size_t)count, sizeof *hits);
  if (!conns || !hits) die("calloc");
  for (int i = 0; i < count; i++) {
    char name[IFNAMSIZ];
    snprintf(name, sizeof name, "tp%d", i);
    const int tun = make_tun(ctl, name, base + (uint32_t)i);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) die("socket");
    int tries = 0;
    while (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
      if (errno != EAGAIN || ++tries > 1000) die("connect");
      usleep(1000);  /* the router's backlog is full: let it accept */
    }
    uint8_t f[MOAT_HELLO_BYTES];
    moat_hello(f);
    if (write(s, f, sizeof f) != (ssize_t)sizeof f) die("write (hello)");
    const int caps = moat_router_hello(s, 5000);
    if (caps < 0 || !(caps & 8)) {
      fprintf(stderr, "{\"error\":\"peer %d: %s\"}\n", i, caps < 0 ? "no hello from the router" : "the router does not take tuns (handoff off)");
      return 2;
    }
    if (moat_send_handoff(s, &tun, 1) != 0) die("sendmsg (handoff)");
    close(tun);  /* the router holds it now; the device lives as long as its fd there */
    conns[i] = s;
    announce(name, base + (uint32_t)i, gw);
  }
  fprintf(stderr, "{\"ready\":true,\"peers\":%d}\n", count);

  uint64_t received = 0;
  double start = now_s(), first = 0, last = 0;
  static uint8_t data[BATCH][64];
  static char ctrl[BATCH][CMSG_SPACE(sizeof(struct in_pktinfo))];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  for (;;) {
    double t = now_s();
    if (t - start >= duration) break;
    if (received > 0 && idle > 0 && t - last >= idle) break;
    struct pollfd p = {rx, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    memset(msgs, 0, sizeof msgs);
    for (int k = 0; k < BATCH; k++) {
      iov[k].iov_base = data[k];
      iov[k].iov_len = sizeof data[k];
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
      msgs[k].msg_hdr.msg_control = ctrl[k];
      msgs[k].msg_hdr.msg_controllen = sizeof ctrl[k];
    }
    int n = recvmmsg(rx, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) { if (errno == EAGAIN || errno == EINTR) continue; die("recvmmsg"); }
    const uint64_t before = received;
    for (int k = 0; k < n; k++) {
      uint32_t tg;
      if (msgs[k].msg_len < 4) continue;
      memcpy(&tg, data[k], 4);
      if (tg != tag) continue;
      received++;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[k].msg_hdr); c; c = CMSG_NXTHDR(&msgs[k].msg_hdr, c)) {
        if (c->cmsg_level != IPPROTO_IP || c->cmsg_type != IP_PKTINFO) continue;
        struct in_pktinfo pi;
        memcpy(&pi, CMSG_DATA(c), sizeof pi);
        const uint32_t i = ntohl(pi.ipi_addr.s_addr) - base;
        if (i < (uint32_t)count) hits[i]++;
      }
    }
    if (received > before) {
      last = now_s();
      if (before == 0) first = last;
    }
  }
  int hit = 0;
  for (int i = 0; i < count; i++) hit += hits[i] > 0;
  peers_report(received, first, last, hit);
  return 0;
}
