// device.h: the vassal's side of a tuntap link: one tun device pumped to one
// unix stream connection to the router, in uWSGI 2.0's framing (frame.h).
//
// Job: every IPv4 packet read from the tun device goes to the router as one
// frame (modifier2 = 0, payload = the raw packet); every modifier2 = 0 frame
// from the router is written to the tun device as one packet. Nothing else is
// ever sent. When the router goes away (EOF, error, refused connection) the
// device keeps its tun device and reconnects with exponential backoff
// (uWSGI's device exits instead).
//
// Limits: one router connection; IPv4 only (other packets read from the tun,
// such as the IPv6 router solicitations sent when the link comes up, are
// dropped here and counted, because uWSGI's router drops a peer that sends
// one); the outbound queue is bounded by queue_bytes (full: the packet is
// dropped and counted); packets read from the tun while disconnected are
// dropped and counted; bytes still queued when a connection breaks are
// discarded (a partial frame must never start the next connection).
//
// Threading: start() runs the loop on a thread of its own and returns once
// the tun device exists (or with the error that prevented it). The class knows
// nothing of Node.js: the addon binds it (device_binding.cc) and the native
// vassal runtime can run it as is. Events reach the sink on the device
// thread, batched per loop iteration.
//
// One hop (DeviceOptions::handoff, handoff.h): with a moat router that
// offers it, the device sends its tun's fd to the router and stops reading
// the tun until the connection breaks; it keeps the fd.
//
// Syscalls: setns (via enter_netns), open/ioctl/netlink (via tun_open),
// ioctl(TUNSETOFFLOAD), writev, sendmsg (SCM_RIGHTS), epoll_create1,
// epoll_ctl, epoll_wait, eventfd, timerfd_create, timerfd_settime, socket
// (AF_UNIX, SOCK_STREAM), connect, read, write, send (MSG_NOSIGNAL), close.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "busy_poll.h"
#include "drops.h"
#include "sndbuf.h"

namespace moat {

struct DeviceOptions {
  std::string name;          // tun device to create (1-15 characters)
  std::string netns;         // '' (the caller's) or a netns file entered by the device thread first
  std::string socket_path;   // the router's socket
  int dir_fd = -1;           // >= 0: socket_path resolved against this directory fd (see below)
  // Every value below comes from the option table (device_binding.cc and the
  // vassal runtime require each); native code has no defaults of its own.
  size_t max_frame = 0;         // largest payload accepted from the router (and sent to it)
  size_t queue_bytes = 0;       // bound of the outbound (to router) queue, headers included
  uint32_t sndbuf = 0;          // the connection's send buffer (sndbuf.h); 0: the kernel's
  uint32_t busy_poll_us = 0;    // polling after moving a packet before sleeping (busy_poll.h); 0: never
  uint32_t reconnect_min_ms = 0;
  uint32_t reconnect_max_ms = 0;
  // Offloads (docs/offload.md): the tun is opened with IFF_VNET_HDR; after
  // the first packet forwarded on each connection the device sends a hello, and only if the router answers
  // with its own do TSO/USO/checksum offloads go on and kModVnet frames
  // (up to 65535 bytes) flow. A uWSGI router never answers: plain frames.
  bool offload = false;
  // One hop (handoff.h, docs/one-hop.md): with offloads negotiated and a
  // router that offers it, send it the tun's fd and stop reading the tun
  // (the router reads and writes it); the connection stays, idle, and the
  // device takes the tun back when it breaks. Needs offload.
  bool handoff = false;
};

struct DeviceEvent {
  enum class Type { Connected, Disconnected, ConnectFailed, Error };
  Type type;
  std::string text;          // Disconnected: reason; ConnectFailed: error; Error: message
  uint32_t attempt = 0;      // ConnectFailed: failures in a row, from 1
  uint32_t retry_ms = 0;     // ConnectFailed: delay before the next attempt
};

struct DeviceStatsSnapshot {
  bool connected = false;
  uint64_t reconnects = 0;   // successful connections after the first
  uint64_t to_router_packets = 0, to_router_bytes = 0;      // queued for the router (payload bytes)
  uint64_t from_router_packets = 0, from_router_bytes = 0;  // written to the tun
  uint64_t drops[kDropCount] = {};
  uint64_t disconnected_drops = 0;  // read from the tun while no router was connected
  bool offload = false;             // offloads negotiated with the current router
  bool handoff = false;             // the current router holds the tun (handoff.h)
  uint64_t handoffs = 0;            // tuns handed over, one per connection at most
  uint64_t vnet_tx = 0, gso_tx = 0; // kModVnet frames sent; of them super-packets
  uint64_t vnet_rx = 0, gso_rx = 0; // kModVnet frames written to the tun; of them super-packets
  uint64_t gso_split = 0, gso_segments = 0;  // super-packets split for a plain router; segments made
  uint64_t uso_tx = 0, uso_segments = 0;     // UDP runs merged into one super-packet; datagrams in them
  uint64_t busy_polls = 0, busy_poll_caught = 0, busy_poll_ns = 0;  // polls before sleeping; those an event ended; time in them
};

// What the device calls "disconnected" among its drop reasons (next to drops.h's).
constexpr const char* kDisconnectedDropName = "disconnected";

class Device {
 public:
  using EventSink = std::function<void(std::vector<DeviceEvent>&&)>;

  explicit Device(DeviceOptions opts);
  ~Device();  // stops
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  // Starts the device thread: enters the netns, creates the tun device, then
  // loops. Returns false with *err (e.g. "TUNSETIFF uwsgi0: Device or resource
  // busy") if the device could not be set up; connecting to the router is not
  // part of that (failures are ConnectFailed events and are retried). Called
  // once; `sink` runs on the device thread and must not block for long.
  bool start(EventSink sink, std::string* err);

  // Stops the loop, joins the thread, closes the tun device and the socket.
  // Idempotent; no sink call happens after it returns.
  void stop();

  // A consistent-enough snapshot of the counters; callable from any thread.
  DeviceStatsSnapshot stats() const;

  // The address connect() uses: socket_path, or with dir_fd >= 0
  // "/proc/self/fd/<dir_fd>/<name>" where name is socket_path if relative and
  // its basename if absolute (so a device can reconnect after pivot_root hid
  // the path). Returns false with *err if it does not fit in sun_path.
  static bool connect_path(const DeviceOptions& o, std::string* path, std::string* err);

 private:
  struct Loop;
  DeviceOptions opts_;
  std::thread thread_;
  int stop_fd_ = -1;
  bool started_ = false;

  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<uint64_t> to_router_packets_{0}, to_router_bytes_{0};
  std::atomic<uint64_t> from_router_packets_{0}, from_router_bytes_{0};
  std::atomic<uint64_t> drops_[kDropCount] = {};
  std::atomic<uint64_t> disconnected_drops_{0};
  std::atomic<bool> offload_{false};
  std::atomic<bool> handoff_{false};
  std::atomic<uint64_t> handoffs_{0};
  std::atomic<uint64_t> vnet_tx_{0}, gso_tx_{0}, vnet_rx_{0}, gso_rx_{0}, gso_split_{0}, gso_segments_{0};
  std::atomic<uint64_t> uso_tx_{0}, uso_segments_{0};
  BusyPoll bp_;

  void count_drop(Drop d) { drops_[static_cast<int>(d)].fetch_add(1, std::memory_order_relaxed); }
  friend struct Loop;
};

}  // namespace moat
