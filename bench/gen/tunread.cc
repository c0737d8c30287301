// tunread.cc: what one packet costs to read from a tun device, with read()
// and with io_uring reads submitted N at a time, side by side in one run.
// The batched reads are native/tun_batch.h's own (the router's and the
// device's code), so the bench measures what they run.
//
//   tunread TUN [ROUNDS]   (run inside a network namespace of its own)
//
// Each round queues 1,000 64-byte UDP datagrams into TUN (routed to it from
// the namespace's kernel; txqueuelen 5000 keeps them all), then reads them
// all back; the time of the reads alone, per packet, is printed per method.
// Methods alternate round by round so drift of the machine falls on all.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tun_batch.h"

namespace {

constexpr unsigned kSlots = 64;
constexpr size_t kSlot = 2048;
constexpr int kPerRound = 1000;

double now() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

char buf[kSlot];

// Reads until the tun is empty: one read() a packet.
int drain_read(int tun) {
  int got = 0;
  while (read(tun, buf, sizeof buf) > 0) got++;
  return got;
}

// Reads until the tun is empty: `batch` reads a call.
int drain_uring(moat::TunBatch& b, unsigned batch) {
  int got = 0;
  for (;;) {
    if (b.read(batch) != batch) return -1;
    bool empty = false;
    for (unsigned i = 0; i < batch; i++) {
      if (moat::TunBatch::empty(b.result(i))) empty = true;
      else if (b.result(i) > 0) got++;
      else return -1;
    }
    if (empty) return got;
  }
}

}  // namespace

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
  struct sockaddr_in d;
  memset(&d, 0, sizeof d);
  d.sin_family = AF_INET;
  d.sin_port = htons(9);
  inet_pton(AF_INET, "10.99.0.2", &d.sin_addr);
  char payload[36] = {0};
  moat::TunBatch batch;
  if (!batch.init(tun, kSlots, kSlot)) {
    fprintf(stderr, "io_uring: not available here (or MOAT_TUN_BATCH=0)\n");
    return 1;
  }
  const unsigned batches[] = {1, 4, 16, 64};
  const int methods = 5;  // read(), then io_uring with each batch size
  double t[5] = {0};
  long n[5] = {0};
  for (int k = 0; k < rounds * methods; k++) {
    int m = k % methods;
    for (int i = 0; i < kPerRound; i++) sendto(s, payload, sizeof payload, 0, reinterpret_cast<struct sockaddr*>(&d), sizeof d);
    double t0 = now();
    int got = m == 0 ? drain_read(tun) : drain_uring(batch, batches[m - 1]);
    t[m] += now() - t0;
    if (got < 0) return 1;
    n[m] += got;
  }
  printf("{\"read\":%.3f", t[0] * 1e6 / n[0]);
  for (int m = 1; m < methods; m++) printf(",\"uring%u\":%.3f", batches[m - 1], t[m] * 1e6 / n[m]);
  printf(",\"packets\":%ld}\n", n[0]);
  return 0;
}
