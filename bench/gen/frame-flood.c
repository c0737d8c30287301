/*
 * frame-flood.c: a flooding vassal as the router sees it, for the tests that
 * need the router, not the CPU, to be the bottleneck (test/helpers/
 * frame-flood.ts builds and starts it). A frame peer in JavaScript runs its
 * event loop for a millisecond or more per wakeup and so holds a CPU that
 * the vassal under test needs; this one sleeps in write() whenever the
 * router's socket is full, as a vassal's device does.
 *
 *   frame-flood SOCKET SRC GW PORT SIZE SECONDS
 *
 * Connects to the router's unix socket, sends framed ICMP echo requests from
 * SRC to GW until one is answered (the router has learned SRC; at most 2 s),
 * prints "ready", waits for a line on stdin, then writes 64 KB chunks of
 * framed UDP datagrams (IPv4 packets of SIZE bytes, SRC:40000 -> GW:PORT)
 * with blocking write() for SECONDS seconds, prints "done CHUNKS" and stays
 * connected until stdin closes (the router's counters for it are read then).
 * Frames: uWSGI's tuntap framing, [0][size lo][size hi][0] then the packet.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "csum.h"

#define CHUNK 65536

static void die(const char *what) {
  fprintf(stderr, "frame-flood: %s: %s\n", what, strerror(errno));
  exit(2);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One frame holding an IPv4 packet of len bytes (header filled, payload
 * zero but for what the caller writes after); returns the frame's size. */
static size_t frame_ipv4(unsigned char *f, size_t len, uint8_t proto, uint32_t src, uint32_t dst) {
  memset(f, 0, 4 + len);
  f[1] = (unsigned char)(len & 255);
  f[2] = (unsigned char)(len >> 8);
  unsigned char *ip = f + 4;
  ip[0] = 0x45;
  ip[2] = (unsigned char)(len >> 8);
  ip[3] = (unsigned char)(len & 255);
  ip[8] = 64;
  ip[9] = proto;
  memcpy(ip + 12, &src, 4);
  memcpy(ip + 16, &dst, 4);
  uint16_t c = csum(ip, 20);
  ip[10] = (unsigned char)(c >> 8);
  ip[11] = (unsigned char)(c & 255);
  return 4 + len;
}

/* Reads frames until an ICMP echo reply arrives (true) or the socket's
 * receive timeout passes (false). */
static int echo_answered(int fd) {
  static unsigned char buf[4 + 65535];
  for (;;) {
    size_t got = 0;
    while (got < 4) {
      ssize_t n = read(fd, buf + got, 4 - got);
      if (n <= 0) return 0;
      got += (size_t)n;
    }
    size_t size = (size_t)buf[1] | (size_t)buf[2] << 8;
    while (got < 4 + size) {
      ssize_t n = read(fd, buf + got, 4 + size - got);
      if (n <= 0) return 0;
      got += (size_t)n;
    }
    if (size >= 28 && (buf[4] >> 4) == 4 && buf[4 + 9] == 1 && buf[4 + (buf[4] & 15) * 4] == 0) return 1;
  }
}

static void write_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("write");
    p += w;
    n -= (size_t)w;
  }
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: frame-flood SOCKET SRC GW PORT SIZE SECONDS\n");
    return 2;
  }
  struct in_addr src, gw;
  if (inet_pton(AF_INET, argv[2], &src) != 1 || inet_pton(AF_INET, argv[3], &gw) != 1) {
    fprintf(stderr, "frame-flood: bad address\n");
    return 2;
  }
  const int port = atoi(argv[4]), size = atoi(argv[5]);
  const double secs = atof(argv[6]);
  if (port <= 0 || port > 65535 || size < 28 || size > 8000 || secs <= 0 || secs > 60) {
    fprintf(stderr, "frame-flood: port 1-65535, size 28-8000, seconds 0-60\n");
    return 2;
  }
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(argv[1]) >= sizeof sa.sun_path) {
    fprintf(stderr, "frame-flood: socket path too long\n");
    return 2;
  }
  strcpy(sa.sun_path, argv[1]);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");

  /* The router learns SRC from the first packet; an answered echo says so. */
  struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) die("setsockopt");
  unsigned char echo[4 + 28];
  int answered = 0;
  for (int i = 0; i < 10 && !answered; i++) {
    size_t n = frame_ipv4(echo, 28, 1, src.s_addr, gw.s_addr);
    unsigned char *icmp = echo + 4 + 20;
    icmp[0] = 8;
    icmp[5] = 1;
    icmp[7] = (unsigned char)i;
    uint16_t c = csum(icmp, 8);
    icmp[2] = (unsigned char)(c >> 8);
    icmp[3] = (unsigned char)(c & 255);
    write_all(fd, echo, n);
    answered = echo_answered(fd);
  }
  if (!answered) {
    printf("no address\n");
    return 1;
  }

  /* A chunk of whole UDP frames, written as one piece each time. */
  static unsigned char chunk[CHUNK];
  size_t used = 0;
  unsigned char frame[4 + 8000];
  size_t flen = frame_ipv4(frame, (size_t)size, 17, src.s_addr, gw.s_addr);
  unsigned char *udp = frame + 4 + 20;
  udp[0] = 40000 >> 8;
  udp[1] = 40000 & 255;
  udp[2] = (unsigned char)(port >> 8);
  udp[3] = (unsigned char)(port & 255);
  udp[4] = (unsigned char)((size - 20) >> 8);
  udp[5] = (unsigned char)((size - 20) & 255);
  memset(udp + 8, 0x61, (size_t)size - 28);  /* checksum 0: none */
  while (used + flen <= CHUNK) {
    memcpy(chunk + used, frame, flen);
    used += flen;
  }
  printf("ready\n");
  fflush(stdout);

  char line[64];
  if (!fgets(line, sizeof line, stdin)) return 0;
  const double end = now_s() + secs;
  unsigned long chunks = 0;
  while (now_s() < end) {
    write_all(fd, chunk, used);
    chunks++;
  }
  printf("done %lu\n", chunks);
  fflush(stdout);
  while (fgets(line, sizeof line, stdin)) {
  }
  close(fd);
  return 0;
}
