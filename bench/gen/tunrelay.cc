/*
 * tunrelay.cc: the one-hop path, for comparison only (bench/one-hop.ts;
 * docs/rates.md, "One hop instead of two"). It opens a tun in each of two
 * network namespaces (the gateway's and the vassal's) and copies packets
 * between them on one thread: what moat's router would do if it held the
 * vassal's tun itself instead of a socket to a device in the vassal. Two
 * copies a packet (a tun read, a tun write) instead of four, one thread
 * woken a hop instead of two. No firewall, no limits, no accounting: an
 * upper bound of that design, not an implementation of it.
 *
 *   tunrelay GW_NS GW_TUN V_NS V_TUN [--busy-us N] [--batch 0|1] [--seconds S]
 *
 * Namespaces by name (/run/netns/NAME). Both tuns carry a virtio-net header
 * with checksum and TSO offloads, as moat's router and device do, so TCP
 * moves as super-packets. --busy-us: after traffic, poll both tuns this long
 * before sleeping (default 100, moat's default; 0: off). --batch 1 (the
 * default): small packets are read through native/tun_batch.h, io_uring
 * reads 1-64 a call, as moat's router and device read them; 0: read() each.
 * Runs until
 * SIGINT/SIGTERM or --seconds (default 600, at most 3600), then prints
 * {"to_gw":..,"to_vassal":..,"dropped":..} on stdout.
 * Syscalls: open, setns, ioctl, epoll_create1, epoll_ctl, epoll_wait, read,
 * write, clock_gettime, rt_sigaction, and tun_batch.h's (io_uring_setup,
 * io_uring_enter, mmap).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "../../native/tun_batch.h"

#define BUF (65536 + 64)
#define BURST 64   /* packets read from one tun before looking at the other */

static volatile sig_atomic_t stop;
static void on_stop(int sig) { (void)sig; stop = 1; }

static void die(const char *what) {
  perror(what);
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A tun named dev in namespace ns, non-blocking, with a virtio-net header
 * and checksum/TSO offloads. The fd keeps working after we leave ns. */
static int open_tun(const char *ns, const char *dev) {
  char path[256];
  snprintf(path, sizeof path, "/run/netns/%s", ns);
  int nsfd = open(path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) die(path);
  if (setns(nsfd, CLONE_NEWNET) < 0) die("setns");
  close(nsfd);
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) die("/dev/net/tun");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
  if (strlen(dev) >= IFNAMSIZ) {
    fprintf(stderr, "tun name too long: %s\n", dev);
    exit(1);
  }
  strcpy(ifr.ifr_name, dev);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) die("TUNSETIFF");
  if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) die("TUNSETOFFLOAD");
  return fd;
}

struct Counts {
  unsigned long long moved = 0, dropped = 0;
};

static void forward(int to, const unsigned char *pkt, ssize_t n, Counts *c) {
  if (write(to, pkt, (size_t)n) != n) c->dropped++;
  else c->moved++;
}

/* Moves up to BURST packets from one tun to the other: how many moved.
 * Both tuns use the same header, so a packet goes as read. Small packets
 * through io_uring (tb) when it works, with the router's policy: as many
 * reads as the last wakeup found, doubling while all find a packet. */
static int relay(int from, int to, moat::TunBatch *tb, unsigned char *buf, Counts *c) {
  int n = 0;
  size_t bytes = 0;
  bool drained = false;
  while (n < BURST && !drained) {
    if (tb && tb->wanted()) {
      const unsigned tried = tb->read(tb->next(size_t(BURST - n)));
      if (tried == 0) continue;  // io_uring failed: read() from now on
      for (unsigned i = 0; i < tried; i++) {
        const int r = tb->result(i);
        if (moat::TunBatch::empty(r) || r < 0) {
          drained = true;
          continue;
        }
        forward(to, tb->slot(i), r, c);
        bytes += size_t(r);
        n++;
      }
      tb->after_call(drained, size_t(n));
      continue;
    }
    ssize_t r = read(from, buf, BUF);
    if (r <= 0) break;
    forward(to, buf, r, c);
    bytes += size_t(r);
    n++;
  }
  if (tb) tb->after_wakeup(size_t(n), bytes);
  return n;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: tunrelay GW_NS GW_TUN V_NS V_TUN [--busy-us N] [--seconds S]\n");
    return 2;
  }
  long busy_us = 100;
  double seconds = 600;
  bool batch = true;
  for (int i = 5; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--busy-us")) busy_us = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--batch")) batch = strcmp(argv[i + 1], "0") != 0;
    else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
    else {
      fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (busy_us < 0 || busy_us > 10000) busy_us = 100;
  if (seconds <= 0 || seconds > 3600) seconds = 600;

  int vfd = open_tun(argv[3], argv[4]);
  int gfd = open_tun(argv[1], argv[2]);
  moat::TunBatch vtb, gtb;
  const bool batched = batch && vtb.init(vfd, BURST, BUF) && gtb.init(gfd, BURST, BUF);
  if (batch && !batched) fprintf(stderr, "tunrelay: io_uring unavailable, reading with read()\n");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.fd = gfd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, gfd, &ev) < 0) die("epoll_ctl");
  ev.data.fd = vfd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, vfd, &ev) < 0) die("epoll_ctl");

  static unsigned char buf[BUF];
  Counts to_gw, to_v;
  const uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
  uint64_t poll_until = 0;   /* busy polling while now < poll_until */
  while (!stop && now_ns() < end) {
    int moved = relay(vfd, gfd, batched ? &vtb : nullptr, buf, &to_gw) + relay(gfd, vfd, batched ? &gtb : nullptr, buf, &to_v);
    const uint64_t t = now_ns();
    if (moved) {
      poll_until = t + (uint64_t)busy_us * 1000u;
      continue;
    }
    if (t < poll_until) continue;
    struct epoll_event got[2];
    if (epoll_wait(ep, got, 2, 100) < 0 && errno != EINTR) die("epoll_wait");
  }
  printf("{\"to_gw\":%llu,\"to_vassal\":%llu,\"dropped\":%llu,\"batched\":%s}\n", to_gw.moved, to_v.moved,
         to_gw.dropped + to_v.dropped, batched ? "true" : "false");
  return 0;
}
