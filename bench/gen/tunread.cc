// tunread.c: what one packet costs to read from a tun device, with read()
// and with io_uring reads submitted N at a time (RWF_NOWAIT, as
// native/tun_batch.h does), side by side in one run.
//
//   tunread TUN [ROUNDS]   (run inside a network namespace of its own)
//
// Each round queues 1,000 64-byte UDP datagrams into TUN (routed to it from
// the namespace's kernel; txqueuelen 5000 keeps them all), then reads them
// all back; the time of the reads alone, per packet, is printed per method.
// Methods alternate round by round so drift of the machine falls on all.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 64
#define SLOT 2048
#define PER_ROUND 1000

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

struct ring {
  int fd;
  unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
  struct io_uring_sqe* sqes;
  struct io_uring_cqe* cqes;
};

static int ring_init(struct ring* r) {
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  r->fd = (int)syscall(__NR_io_uring_setup, SLOTS, &p);
  if (r->fd < 0) return -1;
  size_t sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  size_t cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
  if (cqsz > sqsz) sqsz = cqsz;
  char* sq = mmap(0, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
  if (sq == MAP_FAILED || !(p.features & IORING_FEAT_SINGLE_MMAP)) return -1;
  r->sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
  if (r->sqes == MAP_FAILED) return -1;
  r->sq_tail = (unsigned*)(sq + p.sq_off.tail);
  r->sq_mask = (unsigned*)(sq + p.sq_off.ring_mask);
  r->sq_array = (unsigned*)(sq + p.sq_off.array);
  r->cq_head = (unsigned*)(sq + p.cq_off.head);
  r->cq_tail = (unsigned*)(sq + p.cq_off.tail);
  r->cq_mask = (unsigned*)(sq + p.cq_off.ring_mask);
  r->cqes = (struct io_uring_cqe*)(sq + p.cq_off.cqes);
  return 0;
}

static char bufs[SLOTS][SLOT];

// Reads until the tun is empty: one read() a packet.
static int drain_read(int tun) {
  int got = 0;
  while (read(tun, bufs[got % SLOTS], SLOT) > 0) got++;
  return got;
}

// Reads until the tun is empty: batch reads a call.
static int drain_uring(struct ring* r, int tun, unsigned batch) {
  int got = 0;
  for (;;) {
    unsigned tail = *r->sq_tail;
    for (unsigned i = 0; i < batch; i++) {
      unsigned idx = (tail + i) & *r->sq_mask;
      struct io_uring_sqe* e = &r->sqes[idx];
      memset(e, 0, sizeof *e);
      e->opcode = IORING_OP_READ;
      e->fd = tun;
      e->addr = (unsigned long)bufs[i];
      e->len = SLOT;
      e->off = (unsigned long long)-1;
      e->rw_flags = RWF_NOWAIT;
      e->user_data = i;
      r->sq_array[idx] = idx;
    }
    __atomic_store_n(r->sq_tail, tail + batch, __ATOMIC_RELEASE);
    if (syscall(__NR_io_uring_enter, r->fd, batch, batch, IORING_ENTER_GETEVENTS, NULL, 0) < 0) return -1;
    unsigned head = *r->cq_head, ctail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
    int empty = 0;
    for (; head != ctail; head++) {
      int res = r->cqes[head & *r->cq_mask].res;
      if (res > 0) got++;
      else empty = 1;
    }
    __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
    if (empty) return got;
  }
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: tunread TUN [ROUNDS]\n");
    return 2;
  }
  int rounds = argc > 2 ? atoi(argv[2]) : 200;
  if (rounds < 1 || rounds > 10000) rounds = 200;
  int tun = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", argv[1]);
  if (tun < 0 || ioctl(tun, TUNSETIFF, &ifr) != 0) {
    perror("tun");
    return 1;
  }
  char cmd[256];
  snprintf(cmd, sizeof cmd, "ip addr add 10.99.0.1/24 dev %s && ip link set %s up txqueuelen 5000", argv[1], argv[1]);
  if (system(cmd) != 0) return 1;
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in d = {.sin_family = AF_INET, .sin_port = htons(9)};
  inet_pton(AF_INET, "10.99.0.2", &d.sin_addr);
  char payload[36] = {0};
  struct ring r;
  if (ring_init(&r) != 0) {
    perror("io_uring");
    return 1;
  }
  const unsigned batches[] = {1, 4, 16, 64};
  const int methods = 5;  // read(), then io_uring with each batch size
  double t[5] = {0};
  long n[5] = {0};
  for (int k = 0; k < rounds * methods; k++) {
    int m = k % methods;
    for (int i = 0; i < PER_ROUND; i++) sendto(s, payload, sizeof payload, 0, (struct sockaddr*)&d, sizeof d);
    double t0 = now();
    int got = m == 0 ? drain_read(tun) : drain_uring(&r, tun, batches[m - 1]);
    t[m] += now() - t0;
    if (got < 0) return 1;
    n[m] += got;
  }
  printf("{\"read\":%.3f", t[0] * 1e6 / n[0]);
  for (int m = 1; m < methods; m++) printf(",\"uring%u\":%.3f", batches[m - 1], t[m] * 1e6 / n[m]);
  printf(",\"packets\":%ld}\n", n[0]);
  return 0;
}
