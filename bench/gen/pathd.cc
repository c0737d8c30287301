// pathd.cc: moat's router or device data path without Node.js, for profiling
// (strace, perf tracepoints, callgrind): the same native/ core files the addon
// links, driven by a tiny main.
//
//   pathd router TUN SOCKET [--netns FILE] [--seconds S] [--hold-us N] [--offload]
//   pathd device TUN SOCKET [--netns FILE] [--seconds S]
//
// Runs until SIGINT/SIGTERM or --seconds (default 600, bounded), then prints
// the data path's counters as one JSON line on stdout. Addresses and routes
// are the caller's job (ip -n NS addr add ...), as with the CLI.
// Built by bench/profile.sh with the system c++; not part of the addon.
// Syscalls: those of router.cc / device.cc, plus sigwait-style pause (ppoll).
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "../../native/device.h"
#include "../../native/router.h"

// Nonzero drop counters as "name":count pairs.
static std::string drop_list(const uint64_t* d) {
  std::string s;
  for (int i = 0; i < moat::kDropCount; i++) {
    if (!d[i]) continue;
    s += std::string(s.empty() ? "" : ",") + "\"" + moat::drop_name(moat::Drop(i)) + "\":" + std::to_string(d[i]);
  }
  return "{" + s + "}";
}

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int) { g_stop = 1; }

static void wait_stop(double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!g_stop && std::chrono::steady_clock::now() < end) usleep(50000);
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: pathd router|device TUN SOCKET [--netns FILE] [--seconds S]\n");
    return 1;
  }
  std::string role = argv[1], tun = argv[2], sock = argv[3], netns;
  double seconds = 600;
  long hold_us = 0;
  bool offload = false;
  for (int i = 4; i < argc; i++) {
    if (!strcmp(argv[i], "--netns") && i + 1 < argc) netns = argv[++i];
    else if (!strcmp(argv[i], "--hold-us") && i + 1 < argc) hold_us = atol(argv[++i]);
    else if (!strcmp(argv[i], "--offload")) offload = true;
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
  }
  if (seconds <= 0 || seconds > 3600) seconds = 600;
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  std::string err;
  if (role == "router") {
    moat::RouterOptions o;
    o.tun_name = tun;
    o.netns = netns;
    o.socket_path = sock;
    o.offload = offload;
    o.hold_us = uint32_t(hold_us < 0 || hold_us > 1000000 ? 0 : hold_us);
    // The option table's defaults (src/config/options-table.ts): native code has none.
    o.socket_mode = 0660;
    o.max_frame = 8188;
    o.queue_bytes = 262144;
    o.sndbuf = 0;
    o.sndbuf_busy = 524288;
    o.sndbuf_budget = 64ull << 20;
    o.busy_poll_us = 100;
    moat::Router r(o);
    if (!r.start([] {}, &err)) {
      fprintf(stderr, "pathd router: %s\n", err.c_str());
      return 2;
    }
    fprintf(stderr, "{\"ready\":true}\n");
    size_t taken = 0;
    while (!g_stop) {
      wait_stop(0.2);
      taken += r.take_events().size();  // keep the event queue drained
      static auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
      if (std::chrono::steady_clock::now() >= end) break;
    }
    moat::RouterStats s = r.stats();
    r.stop();
    printf("{\"role\":\"router\",\"tun_rx\":%llu,\"tun_tx\":%llu,\"held_frames\":%llu,\"held_writes\":%llu,\"drops\":%s,\"peers\":%zu,\"events\":%zu}\n",
           (unsigned long long)s.rx_packets, (unsigned long long)s.tx_packets, (unsigned long long)s.held_frames,
           (unsigned long long)s.held_writes, drop_list(s.drops).c_str(),
           s.peers.size(), taken);
    return 0;
  }
  if (role == "device") {
    moat::DeviceOptions o;
    o.name = tun;
    o.netns = netns;
    o.socket_path = sock;
    // The option table's defaults (src/config/options-table.ts): native code has none.
    o.max_frame = 8188;
    o.queue_bytes = 262144;
    o.sndbuf = 4u << 20;
    o.busy_poll_us = 100;
    o.reconnect_min_ms = 100;
    o.reconnect_max_ms = 5000;
    o.offload = offload;
    moat::Device d(o);
    if (!d.start([](std::vector<moat::DeviceEvent>&&) {}, &err)) {
      fprintf(stderr, "pathd device: %s\n", err.c_str());
      return 2;
    }
    fprintf(stderr, "{\"ready\":true}\n");
    wait_stop(seconds);
    moat::DeviceStatsSnapshot s = d.stats();
    d.stop();
    printf("{\"role\":\"device\",\"to_router\":%llu,\"from_router\":%llu,\"drops\":%s,\"reconnects\":%llu}\n",
           (unsigned long long)s.to_router_packets, (unsigned long long)s.from_router_packets,
           drop_list(s.drops).c_str(), (unsigned long long)s.reconnects);
    return 0;
  }
  fprintf(stderr, "pathd: unknown role %s\n", role.c_str());
  return 1;
}
