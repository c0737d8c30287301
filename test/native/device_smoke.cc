// device_smoke.cc: moat::Device without Node, under ASan/UBSan. A tiny router
// in this process accepts the device, sends it frames (cut in pieces, bad
// modifiers, an oversize header), and the device must reconnect; start/stop
// cycles (also while connecting) must not leak or crash. Runs in the caller's
// netns with a unique tun name; needs root (CAP_NET_ADMIN).
// Build: c++ -std=c++17 -g -fsanitize=address,undefined -Inative \
//   test/native/device_smoke.cc native/device.cc native/frame.cc native/tun.cc -lpthread
// Run:   ip netns add X; ip netns exec X ./a.out; ip netns del X
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "device.h"
#include "frame.h"

using namespace moat;

static int fails = 0;
#define CHECK(c)                                                   \
  do {                                                             \
    if (!(c)) { fprintf(stderr, "FAIL %s:%d %s\n", __FILE__, __LINE__, #c); fails++; } \
  } while (0)

static void disable_ipv6() {  // so the kernel's own IPv6 does not add to the ipv6 drops counted below
  for (const char* f : {"/proc/sys/net/ipv6/conf/all/disable_ipv6", "/proc/sys/net/ipv6/conf/default/disable_ipv6"}) {
    FILE* fp = fopen(f, "w");
    if (fp) { fputs("1", fp); fclose(fp); }
  }
}

int main() {
  disable_ipv6();
  char path[] = "/tmp/moat-smoke-XXXXXX";
  if (!mkdtemp(path)) return 2;
  std::string sock = std::string(path) + "/r.sock";
  int srv = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  strcpy(sa.sun_path, sock.c_str());
  if (bind(srv, (sockaddr*)&sa, sizeof sa) || listen(srv, 8)) return 2;

  std::mutex mu;
  std::vector<DeviceEvent> events;
  auto sink = [&](std::vector<DeviceEvent>&& ev) {
    std::lock_guard<std::mutex> g(mu);
    for (auto& e : ev) events.push_back(e);
  };

  DeviceOptions o;
  o.name = "msmoke" + std::to_string(getpid() % 100000);
  o.socket_path = sock;
  o.max_frame = 1500;
  o.queue_bytes = 4096;
  o.reconnect_min_ms = 5;
  o.reconnect_max_ms = 20;
  {
    Device d(o);
    std::string err;
    CHECK(d.start(sink, &err));
    CHECK(!d.start(sink, &err));  // twice
    int c = accept(srv, nullptr, nullptr);
    CHECK(c >= 0);
    // Garbage the device must survive: a rule block, a non-IPv4 payload, a
    // short one, cut in 3-byte pieces; then an oversize header.
    uint8_t buf[64];
    size_t n = 0;
    encode_frame_header(buf + n, 5, kModRuleBlock); n += 4; memcpy(buf + n, "allow", 5); n += 5;
    encode_frame_header(buf + n, 8, kModPacket); n += 4; memset(buf + n, 0x60, 8); n += 8;
    encode_frame_header(buf + n, 3, kModPacket); n += 4; memset(buf + n, 0x45, 3); n += 3;
    for (size_t i = 0; i < n; i += 3) {
      CHECK(write(c, buf + i, std::min<size_t>(3, n - i)) > 0);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    uint8_t big[4];
    encode_frame_header(big, 1501, kModPacket);
    CHECK(write(c, big, 4) == 4);
    int c2 = accept(srv, nullptr, nullptr);  // the device reconnects
    CHECK(c2 >= 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    DeviceStatsSnapshot s = d.stats();
    CHECK(s.connected);
    CHECK(s.reconnects == 1);
    CHECK(s.drops[int(Drop::BadModifier)] == 1);
    CHECK(s.drops[int(Drop::Ipv6)] == 1);
    CHECK(s.drops[int(Drop::Short)] == 1);
    close(c);
    close(c2);  // EOF: the device retries; the listener is still there
    int c3 = accept(srv, nullptr, nullptr);
    CHECK(c3 >= 0);
    close(c3);
    d.stop();
    d.stop();
  }
  close(srv);
  unlink(sock.c_str());
  // Start/stop cycles while the router is absent (connect failing, timer armed).
  for (int i = 0; i < 50; i++) {
    Device d(o);
    std::string err;
    CHECK(d.start(sink, &err));
    if (i % 2) std::this_thread::sleep_for(std::chrono::milliseconds(3));
  }  // destructor stops
  {
    std::lock_guard<std::mutex> g(mu);
    int connected = 0, disconnected = 0, failed = 0;
    for (auto& e : events) {
      connected += e.type == DeviceEvent::Type::Connected;
      disconnected += e.type == DeviceEvent::Type::Disconnected;
      failed += e.type == DeviceEvent::Type::ConnectFailed;
    }
    CHECK(connected == 3);
    CHECK(disconnected >= 2);
    CHECK(failed >= 50);
    printf("events: %zu (connected %d, disconnected %d, connect_failed %d)\n", events.size(), connected, disconnected, failed);
  }
  rmdir(path);
  printf(fails ? "FAILED\n" : "ok\n");
  return fails ? 1 : 0;
}
