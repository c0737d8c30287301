/*
 * flood.c: the bench's UDP packet generator and counter (iperf3 tops out near
 * 250k packets/s on a small box; this does not).
 *
 *   flood send --dst IP --port P [--src IP] [--size BYTES] [--batch N]
 *              [--rate PPS] [--count N] [--duration S] [--tag T]
 *     Sends UDP datagrams whose IPv4 packet is BYTES long (default 64:
 *     20 IP + 8 UDP + 36 payload) in batches of N with sendmmsg(). With
 *     --rate the batches are paced to PPS packets/s (absolute schedule, so a
 *     late batch does not lower the average); without it, as fast as the
 *     socket takes them. Stops at --count packets or --duration seconds,
 *     whichever comes first (both bounded: the defaults are 10 s and 100M).
 *     SIGTERM or SIGINT ends the run early, as the limits do (the neighbour
 *     section stops its floods when its pings are done).
 *     Prints {"sent":..,"errors":..,"elapsed":..,"pps":..}. With
 *     --dst-count N the socket is not connected and the datagrams go to
 *     --dst, --dst + 1, ... --dst + N - 1 in turn (the 1,000-peer bench);
 *     --dst-shuffle SEED (not 0) sends them in a fixed shuffled order.
 *
 *   flood recv --bind IP --port P [--duration S] [--idle S] [--tag T]
 *     Counts datagrams with recvmmsg() whose first 4 payload bytes equal the
 *     tag (so packets from an earlier step are not counted). Prints
 *     {"ready":true} on stderr once bound, then stops after --duration
 *     seconds, or --idle seconds without a packet once the first arrived.
 *     Prints {"received":..,"elapsed":..,"pps":..} where elapsed runs from
 *     the first to the last counted packet.
 *
 * Limits: IPv4 UDP only; the payload is zeroes but for the tag; a receive
 * buffer of 4 MiB is asked for (the kernel caps it at rmem_max unless root
 * uses SO_RCVBUFFORCE, which is tried first).
 * Syscalls: socket, bind, setsockopt, connect, sendmmsg, recvmmsg,
 * clock_gettime, clock_nanosleep, write, rt_sigaction.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 256
#define MAX_SIZE 1472

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Set by SIGTERM/SIGINT in `send`: stop sending and report. */
static volatile sig_atomic_t stop_sending;
static void on_stop(int sig) { (void)sig; stop_sending = 1; }

static void sleep_until(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !stop_sending) {}
}

static void die(const char *what) {
  fprintf(stderr, "{\"error\":\"%s: %s\"}\n", what, strerror(errno));
  exit(2);
}

static void usage(void) {
  fprintf(stderr,
          "usage: flood send --dst IP [--dst-count N [--dst-shuffle SEED]] --port P [--src IP] [--size B] [--batch N] [--rate PPS] [--count N] [--duration S] [--tag T]\n"
          "       flood recv --bind IP --port P [--duration S] [--idle S] [--tag T]\n");
  exit(1);
}

struct opts {
  const char *dst, *src, *bind;
  int port, size, batch;
  double rate, duration, idle;
  unsigned long long count;
  uint32_t tag;
  int dst_count;
  unsigned dst_seed;  /* --dst-shuffle SEED: the destinations' order, 0 = address order */
};

static void parse(int argc, char **argv, struct opts *o) {
  for (int i = 2; i < argc; i++) {
    const char *k = argv[i];
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (!strcmp(k, "--dst")) o->dst = v;
    else if (!strcmp(k, "--src")) o->src = v;
    else if (!strcmp(k, "--bind")) o->bind = v;
    else if (!strcmp(k, "--port")) o->port = atoi(v);
    else if (!strcmp(k, "--size")) o->size = atoi(v);
    else if (!strcmp(k, "--batch")) o->batch = atoi(v);
    else if (!strcmp(k, "--rate")) o->rate = atof(v);
    else if (!strcmp(k, "--count")) o->count = strtoull(v, NULL, 10);
    else if (!strcmp(k, "--duration")) o->duration = atof(v);
    else if (!strcmp(k, "--idle")) o->idle = atof(v);
    else if (!strcmp(k, "--tag")) o->tag = (uint32_t)strtoul(v, NULL, 10);
    else if (!strcmp(k, "--dst-count")) o->dst_count = atoi(v);
    else if (!strcmp(k, "--dst-shuffle")) o->dst_seed = (unsigned)strtoul(v, NULL, 10);
    else usage();
  }
  if (o->port <= 0 || o->port > 65535) usage();
  if (o->size < 32 || o->size > MAX_SIZE + 28) usage();
  if (o->batch < 1) o->batch = 1;
  if (o->batch > MAX_BATCH) o->batch = MAX_BATCH;
  if (o->duration <= 0 || o->duration > 600) o->duration = 10;
  if (o->count == 0 || o->count > 100000000ULL) o->count = 100000000ULL;
  if (o->dst_count < 0 || o->dst_count > 65536) usage();
}

static void set_addr(struct sockaddr_in *sa, const char *ip, int port) {
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, ip, &sa->sin_addr) != 1) { fprintf(stderr, "bad address %s\n", ip); exit(1); }
}

static int do_send(struct opts *o) {
  if (!o->dst) usage();
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) die("socket");
  int sndbuf = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (o->src) {
    struct sockaddr_in sa;
    set_addr(&sa, o->src, 0);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
  }
  struct sockaddr_in dst;
  set_addr(&dst, o->dst, o->port);
  /* --dst-count N: unconnected, destinations dst, dst+1, ... dst+N-1 in turn. */
  struct sockaddr_in *dsts = NULL;
  if (o->dst_count > 0) {
    dsts = calloc((size_t)o->dst_count, sizeof *dsts);
    if (!dsts) die("calloc");
    for (int i = 0; i < o->dst_count; i++) {
      dsts[i] = dst;
      dsts[i].sin_addr.s_addr = htonl(ntohl(dst.sin_addr.s_addr) + (uint32_t)i);
    }
    /* A fixed shuffle (Fisher-Yates, seeded): consecutive datagrams go to
     * peers far apart, as traffic does, where address order sends runs of
     * neighbouring addresses (and neighbouring state in the router). */
    if (o->dst_seed) {
      srand(o->dst_seed);
      for (int i = o->dst_count - 1; i > 0; i--) {
        int j = rand() % (i + 1);
        struct sockaddr_in t = dsts[i];
        dsts[i] = dsts[j];
        dsts[j] = t;
      }
    }
  } else if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
    die("connect");
  }
  unsigned long long next_dst = 0;

  static unsigned char payload[MAX_SIZE];
  size_t plen = (size_t)(o->size - 28);
  memcpy(payload, &o->tag, sizeof o->tag);
  struct iovec iov[MAX_BATCH];
  struct mmsghdr msgs[MAX_BATCH];
  memset(msgs, 0, sizeof msgs);
  for (int i = 0; i < MAX_BATCH; i++) {
    iov[i].iov_base = payload;
    iov[i].iov_len = plen;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  /* At low rates, smaller batches keep the pacing smooth (about 1 ms apart). */
  int batch = o->batch;
  if (o->rate > 0 && o->rate / 1000.0 < batch) batch = o->rate / 1000.0 < 1 ? 1 : (int)(o->rate / 1000.0);

  /* No SA_RESTART: a sendmmsg blocked on a full socket returns EINTR. */
  struct sigaction sa_stop;
  memset(&sa_stop, 0, sizeof sa_stop);
  sa_stop.sa_handler = on_stop;
  sigaction(SIGTERM, &sa_stop, NULL);
  sigaction(SIGINT, &sa_stop, NULL);

  unsigned long long sent = 0, errors = 0, attempts = 0;
  double start = now_s(), end = start + o->duration;
  double t = start;
  while (sent < o->count && !stop_sending) {
    t = now_s();
    if (t >= end) break;
    int n = batch;
    if ((unsigned long long)n > o->count - sent) n = (int)(o->count - sent);
    if (o->rate > 0) {
      /* Offered packets so far are counted in attempts, so losses at the
       * socket do not make the sender speed up to catch up. */
      double due = start + (double)attempts / o->rate;
      if (due > t) { sleep_until(due); if (due >= end) break; }
    }
    if (dsts) {
      for (int i = 0; i < n; i++) {
        msgs[i].msg_hdr.msg_name = &dsts[(next_dst + (unsigned long long)i) % (unsigned)o->dst_count];
        msgs[i].msg_hdr.msg_namelen = sizeof *dsts;
      }
    }
    int r = sendmmsg(fd, msgs, (unsigned)n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      errors++;
      attempts += (unsigned long long)n;
      /* ENOBUFS/EAGAIN/ECONNREFUSED under load: count and go on. */
      continue;
    }
    sent += (unsigned long long)r;
    next_dst += (unsigned long long)(r > 0 ? r : n);
    attempts += (unsigned long long)(r > 0 ? r : n);
  }
  double el = now_s() - start;
  printf("{\"sent\":%llu,\"errors\":%llu,\"elapsed\":%.6f,\"pps\":%.1f}\n", sent, errors, el,
         el > 0 ? (double)sent / el : 0.0);
  fflush(stdout);
  close(fd);
  free(dsts);
  return 0;
}

static int do_recv(struct opts *o) {
  if (!o->bind) usage();
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) die("socket");
  int rcvbuf = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct timeval tv = {0, 50000}; /* wake every 50 ms to check the clock */
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) die("SO_RCVTIMEO");
  struct sockaddr_in sa;
  set_addr(&sa, o->bind, o->port);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
  fprintf(stderr, "{\"ready\":true}\n");
  fflush(stderr);

  static unsigned char bufs[MAX_BATCH][2048];
  struct iovec iov[MAX_BATCH];
  struct mmsghdr msgs[MAX_BATCH];
  unsigned long long received = 0, other = 0;
  double start = now_s(), first = 0, last = 0;
  for (;;) {
    double t = now_s();
    if (t - start >= o->duration) break;
    if (received > 0 && o->idle > 0 && t - last >= o->idle) break;
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < MAX_BATCH; i++) {
      iov[i].iov_base = bufs[i];
      iov[i].iov_len = sizeof bufs[i];
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int r = recvmmsg(fd, msgs, MAX_BATCH, MSG_WAITFORONE, NULL);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      die("recvmmsg");
    }
    double got = now_s();
    for (int i = 0; i < r; i++) {
      uint32_t tag = 0;
      if (msgs[i].msg_len >= sizeof tag) memcpy(&tag, bufs[i], sizeof tag);
      if (tag == o->tag) {
        if (received == 0) first = got;
        received++;
        last = got;
      } else {
        other++;
      }
    }
  }
  double el = last - first;
  printf("{\"received\":%llu,\"other\":%llu,\"elapsed\":%.6f,\"pps\":%.1f}\n", received, other, el,
         el > 0 ? (double)received / el : 0.0);
  fflush(stdout);
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  struct opts o = {0};
  o.size = 64;
  o.batch = 64;
  o.idle = 0.5;
  parse(argc, argv, &o);
  if (!strcmp(argv[1], "send")) return do_send(&o);
  if (!strcmp(argv[1], "recv")) return do_recv(&o);
  usage();
  return 1;
}
