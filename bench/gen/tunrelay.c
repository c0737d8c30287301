/*
 * tunrelay.c: the one-hop path, for comparison only (bench/one-hop.ts;
 * docs/rates.md, "One hop instead of two"). It opens a tun in each of two
 * network namespaces (the gateway's and the vassal's) and copies packets
 * between them on one thread: what moat's router would do if it held the
 * vassal's tun itself instead of a socket to a device in the vassal. Two
 * copies a packet (a tun read, a tun write) instead of four, one thread
 * woken a hop instead of two. No firewall, no limits, no accounting: an
 * upper bound of that design, not an implementation of it.
 *
 *   tunrelay GW_NS GW_TUN V_NS V_TUN [--busy-us N] [--seconds S]
 *
 * Namespaces by name (/run/netns/NAME). Both tuns carry a virtio-net header
 * with checksum and TSO offloads, as moat's router and device do, so TCP
 * moves as super-packets. --busy-us: after traffic, poll both tuns this long
 * before sleeping (default 100, moat's default; 0: off). Runs until
 * SIGINT/SIGTERM or --seconds (default 600, at most 3600), then prints
 * {"to_gw":..,"to_vassal":..,"dropped":..} on stdout.
 * Syscalls: open, setns, ioctl, epoll_create1, epoll_ctl, epoll_wait, read,
 * write, clock_gettime, rt_sigaction.
 */
#define _GNU_SOURCE
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

/* Moves up to BURST packets from one tun to the other: how many moved.
 * Both tuns use the same header, so a packet goes as read. */
static int relay(int from, int to, unsigned char *buf, unsigned long long *moved, unsigned long long *dropped) {
  int n = 0;
  while (n < BURST) {
    ssize_t r = read(from, buf, BUF);
    if (r <= 0) break;
    if (write(to, buf, (size_t)r) != r) (*dropped)++;
    else (*moved)++;
    n++;
  }
  return n;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: tunrelay GW_NS GW_TUN V_NS V_TUN [--busy-us N] [--seconds S]\n");
    return 2;
  }
  long busy_us = 100;
  double seconds = 600;
  for (int i = 5; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--busy-us")) busy_us = atol(argv[i + 1]);
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
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN};
  ev.data.fd = gfd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, gfd, &ev) < 0) die("epoll_ctl");
  ev.data.fd = vfd;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, vfd, &ev) < 0) die("epoll_ctl");

  static unsigned char buf[BUF];
  unsigned long long to_gw = 0, to_v = 0, dropped = 0;
  const uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);
  uint64_t poll_until = 0;   /* busy polling while now < poll_until */
  while (!stop && now_ns() < end) {
    int moved = relay(vfd, gfd, buf, &to_gw, &dropped) + relay(gfd, vfd, buf, &to_v, &dropped);
    const uint64_t t = now_ns();
    if (moved) {
      poll_until = t + (uint64_t)busy_us * 1000u;
      continue;
    }
    if (t < poll_until) continue;
    struct epoll_event got[2];
    if (epoll_wait(ep, got, 2, 100) < 0 && errno != EINTR) die("epoll_wait");
  }
  printf("{\"to_gw\":%llu,\"to_vassal\":%llu,\"dropped\":%llu}\n", to_gw, to_v, dropped);
  return 0;
}
