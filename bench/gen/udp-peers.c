/*
 * udp-peers.c: the scale bench's baseline without a router: --count UDP
 * sockets in one process, socket i bound to --base + i and --port (the
 * caller's namespace routes the addresses to itself: a local route), read
 * through one epoll set, counting the datagrams that carry the 4-byte --tag
 * payload (what bench/gen/flood.c sends). So the kernel's own path spread
 * over N receiving sockets, with the same generator and the same one
 * receiving process as peers.c and tun-peers.c.
 *
 *   udp-peers --socket - --count N --base IP --gw IP --port P --tag T
 *             [--duration S] [--idle S]
 *
 * (--socket and --gw are peers.c's arguments; not used here.) Prints
 * {"ready":true,"peers":N} on stderr once every socket is bound, then
 * peers.c's result line on stdout.
 *
 * Limits: N <= 20000 (RLIMIT_NOFILE is raised to fit); a readable socket
 * gives at most 64 datagrams a call (recvmmsg), then epoll picks again.
 * Syscalls: setrlimit, socket, setsockopt, bind, epoll_create1, epoll_ctl,
 * epoll_wait, recvmmsg, clock_gettime.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "peers-args.h"

#define MAX_PEERS 20000
#define BATCH 64
#define DGRAM 2048

int main(int argc, char **argv) {
  struct peers_args a;
  if (!peers_args_parse(argc, argv, "udp-peers", MAX_PEERS, &a)) return 1;
  const int count = a.count;
  struct sockaddr_un unused;  /* peers_prepare raises RLIMIT_NOFILE for count sockets */
  if (!peers_prepare(&a, 1, &unused)) return 1;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  uint64_t *hits = calloc((size_t)count, sizeof *hits);
  int *fds = calloc((size_t)count, sizeof *fds);
  if (!hits || !fds) die("calloc");
  for (int i = 0; i < count; i++) {
    fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fds[i] < 0) die("socket");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)a.port),
                             .sin_addr.s_addr = htonl(a.base + (uint32_t)i)};
    if (bind(fds[i], (struct sockaddr *)&sa, sizeof sa) != 0) die("bind");
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e) != 0) die("epoll_ctl");
  }
  fprintf(stderr, "{\"ready\":true,\"peers\":%d}\n", count);
  static unsigned char bufs[BATCH][DGRAM];
  struct iovec iov[BATCH];
  struct mmsghdr msgs[BATCH];
  for (int k = 0; k < BATCH; k++) {
    iov[k] = (struct iovec){.iov_base = bufs[k], .iov_len = DGRAM};
    memset(&msgs[k], 0, sizeof msgs[k]);
    msgs[k].msg_hdr.msg_iov = &iov[k];
    msgs[k].msg_hdr.msg_iovlen = 1;
  }
  uint64_t received = 0;
  double start = now_s(), first = 0, last = 0;
  struct epoll_event evs[256];
  for (;;) {
    double t = now_s();
    if (t - start >= a.duration) break;
    if (received > 0 && a.idle > 0 && t - last >= a.idle) break;
    const uint64_t before = received;
    int n = epoll_wait(ep, evs, 256, 50);
    if (n < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
    for (int k = 0; k < n; k++) {
      const uint32_t i = evs[k].data.u32;
      int got = recvmmsg(fds[i], msgs, BATCH, MSG_DONTWAIT, NULL);
      if (got < 0) { if (errno == EAGAIN || errno == EINTR) continue; die("recvmmsg"); }
      for (int m = 0; m < got; m++) {
        uint32_t tg;
        if (msgs[m].msg_len < 4) continue;
        memcpy(&tg, bufs[m], 4);
        if (tg != a.tag) continue;
        if (received == 0) first = now_s();
        received++;
        hits[i]++;
      }
    }
    if (received > before) last = now_s();
  }
  int hit = 0;
  for (int i = 0; i < count; i++) hit += hits[i] > 0;
  peers_report(received, first, last, hit);
  return 0;
}
