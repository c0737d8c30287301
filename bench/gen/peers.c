/*
 * peers.c: many vassals in one process, for the router's scale bench. Opens
 * --count unix stream connections to a router's socket; connection i sends
 * one framed ICMP echo request from --base + i to --gw, so the router learns
 * that address; then all connections are read through one epoll set and the
 * frames that carry a UDP datagram to --port with the 4-byte --tag payload
 * are counted (what bench/gen/flood.c sends).
 *
 *   peers --socket PATH --count N --base IP --gw IP --port P --tag T
 *         [--duration S] [--idle S]
 *
 * Prints {"ready":true,"peers":N} on stderr once every connection has sent
 * its first frame, then, after --duration seconds (or --idle seconds without
 * a counted frame once one arrived), {"received":..,"elapsed":..,"pps":..,
 * "peers_hit":..} on stdout (elapsed: first to last counted frame).
 *
 * Limits: N <= 20000 (RLIMIT_NOFILE is raised to fit); frames up to 65535 +
 * 4 bytes, reassembled per connection; a malformed stream closes that
 * connection. Syscalls: setrlimit, socket, connect, write, epoll_create1,
 * epoll_ctl, epoll_wait, read, clock_gettime, close.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "csum.h"
#include "peers-args.h"

#define MAX_PEERS 20000
#define BUF 131072

struct conn {
  int fd;
  size_t len;
  uint64_t hits;
  unsigned char *buf;
};

/* A framed ICMP echo request src -> dst (4-byte header + 28-byte packet). */
static size_t echo_frame(unsigned char *f, uint32_t src, uint32_t dst, uint16_t id) {
  unsigned char *ip = f + 4, *ic = ip + 20;
  memset(f, 0, 32);
  f[1] = 28;
  ip[0] = 0x45; ip[3] = 28; ip[8] = 64; ip[9] = 1;
  uint32_t s = htonl(src), d = htonl(dst);
  memcpy(ip + 12, &s, 4); memcpy(ip + 16, &d, 4);
  uint16_t c = csum(ip, 20); ip[10] = (unsigned char)(c >> 8); ip[11] = (unsigned char)c;
  ic[0] = 8; ic[4] = (unsigned char)(id >> 8); ic[5] = (unsigned char)id;
  c = csum(ic, 8); ic[2] = (unsigned char)(c >> 8); ic[3] = (unsigned char)c;
  return 32;
}

int main(int argc, char **argv) {
  struct peers_args a;
  if (!peers_args_parse(argc, argv, "peers", MAX_PEERS, &a)) return 1;
  const int count = a.count, port = a.port;
  const uint32_t tag = a.tag;
  const double duration = a.duration, idle = a.idle;
  struct sockaddr_un sa;
  if (!peers_prepare(&a, 1, &sa)) return 1;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct conn *c = calloc((size_t)count, sizeof *c);
  if (!c) die("calloc");
  for (int i = 0; i < count; i++) {
    c[i].fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c[i].fd < 0) die("socket");
    int tries = 0;
    while (connect(c[i].fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
      if (errno != EAGAIN || ++tries > 1000) die("connect");
      usleep(1000);  /* the router's backlog is full: let it accept */
    }
    unsigned char f[32];
    size_t n = echo_frame(f, a.base + (uint32_t)i, a.gw, (uint16_t)i);
    if (write(c[i].fd, f, n) != (ssize_t)n) die("write");
    c[i].buf = malloc(BUF);
    if (!c[i].buf) die("malloc");
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &e) != 0) die("epoll_ctl");
  }
  fprintf(stderr, "{\"ready\":true,\"peers\":%d}\n", count);
  uint64_t received = 0;
  double start = now_s(), first = 0, last = 0;
  struct epoll_event evs[256];
  for (;;) {
    double t = now_s();
    if (t - start >= duration) break;
    if (received > 0 && idle > 0 && t - last >= idle) break;
    const uint64_t before = received;
    int n = epoll_wait(ep, evs, 256, 50);
    if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
    for (int k = 0; k < n; k++) {
      struct conn *p = &c[evs[k].data.u32];
      if (p->fd < 0) continue;
      ssize_t r = read(p->fd, p->buf + p->len, BUF - p->len);
      if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
        close(p->fd);
        p->fd = -1;
        continue;
      }
      p->len += (size_t)r;
      size_t off = 0;
      while (p->len - off >= 4) {
        const unsigned char *f = p->buf + off;
        size_t size = (size_t)f[1] | (size_t)f[2] << 8;
        if (p->len - off - 4 < size) break;
        const unsigned char *ip = f + 4;
        if (size >= 32 && ip[9] == 17) {
          size_t ihl = (size_t)(ip[0] & 15) * 4;
          uint32_t tg;
          if (size >= ihl + 12 && (ip[ihl + 2] << 8 | ip[ihl + 3]) == port) {
            memcpy(&tg, ip + ihl + 8, 4);
            if (tg == tag) {
              if (received == 0) first = now_s();
              received++;
              p->hits++;
            }
          }
        }
        off += 4 + size;
      }
      if (off > 0) { memmove(p->buf, p->buf + off, p->len - off); p->len -= off; }
    }
    if (received > before) last = now_s();
  }
  int hit = 0;
  for (int i = 0; i < count; i++) hit += c[i].hits > 0;
  peers_report(received, first, last, hit);
  return 0;
}
