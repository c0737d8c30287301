// device.cc: the vassal's device loop (see device.h for the contract).
//
// One thread, one epoll set over four fds:
//   tun     read up to 64 packets per wakeup -> outbound queue (header+packet);
//           a packet above max_frame is fragmented (DF clear) or answered
//           with ICMP fragmentation-needed on the tun (DF set)
//           -> one send() of everything queued (partial sends kept, EPOLLOUT)
//   socket  read many frames per read() -> reassemble (next_frame, partial
//           frames kept) -> one write() per packet to the tun
//   timer   a one-shot timerfd: the next connection attempt (backoff)
//   stop    an eventfd written by stop()
// With offloads (o.offload, docs/offload.md) the tun carries a
// virtio_net_hdr before every packet: after the router answered our hello,
// reads go out whole as kModVnet frames; before (or to a uWSGI router) the
// header is stripped and super-packets are split here.
// Every length from the router is untrusted: next_frame refuses a header
// above max_frame before any payload is buffered, and the inbound buffer
// always has room for one whole frame.
#include "device.h"

#include <pthread.h>
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>

#include "coalesce.h"
#include "frame.h"
#include "handoff.h"
#include "lazy_buffer.h"
#include "offload.h"
#include "sndbuf.h"
#include "tun.h"
#include "tun_batch.h"

namespace moat {

namespace {

constexpr int kTunBatch = 64;        // packets read from the tun per wakeup
constexpr int kSocketReads = 4;      // reads from the socket per wakeup
constexpr size_t kTunReadSize = 65536 + 16;  // one packet, with a virtio_net_hdr
// Batched tun reads (tun_batch.h): slots of kTunReadSize (virtual memory,
// touched as packets land: a vassal counts its megabytes).
constexpr unsigned kTunSlots = 16;
constexpr uint32_t kIcmpPerSecond = 100;  // fragmentation-needed answers
// Merge runs of same-flow UDP datagrams for a negotiated router
// (coalesce.h); the IPv4 super-packet stays within the tuns' gso_max_size.
constexpr bool kUsoCoalesce = true;
constexpr size_t kUsoMaxPacket = kTunGsoMaxSize;

enum Tag : uint64_t { kTagStop = 0, kTagTun = 1, kTagSocket = 2, kTagTimer = 3 };

std::string errno_text(const char* what, int e) {
  return std::string(what) + ": " + strerror(e);
}

}  // namespace

bool Device::connect_path(const DeviceOptions& o, std::string* path, std::string* err) {
  if (o.socket_path.empty()) {
    *err = "socket path is empty";
    return false;
  }
  std::string p = o.socket_path;
  if (o.dir_fd >= 0) {
    std::string name = p;
    if (p[0] == '/') {
      size_t slash = p.find_last_of('/');
      name = p.substr(slash + 1);
      if (name.empty()) {
        *err = "socket path " + p + " has no file name";
        return false;
      }
    }
    p = "/proc/self/fd/" + std::to_string(o.dir_fd) + "/" + name;
  }
  if (p.size() >= sizeof(sockaddr_un::sun_path)) {
    *err = "socket path " + p + " is " + std::to_string(p.size()) +
           " bytes, a unix socket path holds at most " +
           std::to_string(sizeof(sockaddr_un::sun_path) - 1);
    return false;
  }
  *path = p;
  return true;
}

struct Device::Loop {
  Device& d;
  const DeviceOptions& o;
  EventSink sink;
  std::string addr;

  int tun = -1, sock = -1, ep = -1, timer = -1;
  uint64_t sock_gen = 0;          // tells a stale socket event from the current socket's
  bool want_out = false;          // EPOLLOUT armed on the socket
  KeepWarm warm;                  // short sleeps for a while after traffic (busy_poll.h)
  bool ever_connected = false;
  uint32_t failures = 0;          // connection attempts failed in a row
  uint32_t next_delay_ms;         // backoff before the next attempt
  std::chrono::steady_clock::time_point connected_at;

  LazyBuffer out;       // outbound queue: [out_head, out_tail) pending
  size_t out_head = 0, out_tail = 0;
  LazyBuffer in;        // inbound bytes: [0, in_len) not yet parsed
  size_t in_len = 0;
  LazyBuffer scratch;   // one packet read from the tun
  TunBatch tun_batch;             // several packets a system call (tun_batch.h)
  // A batch's packets not yet queued (slots stash_next..stash_end-1): the
  // queue had no room; flush() queues them as the socket takes the queue.
  unsigned stash_next = 0, stash_end = 0;
  LazyBuffer frag;      // one fragment being built (too_big)
  // Offloads: vnet = the tun has IFF_VNET_HDR (o.offload); negotiated once
  // the router answered this connection's hello; hello_sent per connection.
  bool vnet = false, negotiated = false, hello_sent = false;
  bool tun_paused = false;        // tun reads paused: the queue has no room for a super-packet
  // One hop (o.handoff): the router offered to take the tun (its hello);
  // handed_off once it has it, and the tun is not read here until the
  // connection breaks.
  bool handoff_pending = false, handed_off = false;
  uint16_t my_caps = 0;           // what our tun takes (kernel support probed at init)
  uint16_t router_caps = 0;       // what the router's hello said it takes
  size_t in_limit = 0;            // frame limit from the router: max_frame, 65535 once negotiated
  LazyBuffer segbuf;    // one segment of a super-packet being split
  // The open USO run (coalesce.h): always the last frame in the queue, its
  // frame header at run_off; closed before anything else is queued or sent.
  UsoRun uso;
  size_t run_off = 0;
  std::chrono::steady_clock::time_point icmp_window{};
  uint32_t icmp_budget = 0;
  std::vector<DeviceEvent> events;
  bool running = true;

  Loop(Device& dev, EventSink s, std::string a)
      : d(dev), o(dev.opts_), sink(std::move(s)), addr(std::move(a)),
        next_delay_ms(dev.opts_.reconnect_min_ms) {}

  ~Loop() {
    if (sock >= 0) close(sock);
    if (tun >= 0) close(tun);
    if (timer >= 0) close(timer);
    if (ep >= 0) close(ep);
    d.connected_.store(false);
  }

  bool init(std::string* err) {
    d.bp_.configure(o.busy_poll_us);
    if (!enter_netns(o.netns, err)) return false;
    vnet = o.offload;
    tun = tun_open(o.name, vnet, kTunGsoMaxSize, err);
    if (tun < 0) return false;
    if (vnet) {
      // Probe which offloads this kernel's tun takes, then off until negotiated.
      const int f = tun_set_offload(tun, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_USO4 | TUN_F_USO6, err);
      if (f < 0 || tun_set_offload(tun, 0, err) < 0) return false;
      my_caps = kCapCsum | kCapTso4 | ((f & TUN_F_USO4) ? kCapUso4 : 0);
      segbuf.resize(kTunReadSize);
    }
    in_limit = o.max_frame;
    ep = epoll_create1(EPOLL_CLOEXEC);
    timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ep < 0 || timer < 0) {
      *err = errno_text(ep < 0 ? "epoll_create1" : "timerfd_create", errno);
      return false;
    }
    if (!add(d.stop_fd_, EPOLLIN, kTagStop) || !add(tun, EPOLLIN, kTagTun) ||
        !add(timer, EPOLLIN, kTagTimer)) {
      *err = errno_text("epoll_ctl", errno);
      return false;
    }
    out.resize(o.queue_bytes);
    in.resize(std::max<size_t>(65536, 2 * (kFrameHeaderSize + (vnet ? kMaxFramePayload : o.max_frame))));
    scratch.resize(kTunReadSize);
    tun_batch.init(tun, kTunSlots, kTunReadSize);  // failing: read() only
    frag.resize(o.max_frame);
    return true;
  }

  bool add(int fd, uint32_t what, uint64_t tag) {
    epoll_event ev{};
    ev.events = what;
    ev.data.u64 = tag;
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0;
  }

  void event(DeviceEvent::Type t, std::string text = {}, uint32_t attempt = 0, uint32_t retry = 0) {
    events.push_back(DeviceEvent{t, std::move(text), attempt, retry});
  }

  void arm_timer(uint32_t ms) {
    itimerspec its{};
    its.it_value.tv_sec = ms / 1000;
    its.it_value.tv_nsec = long(ms % 1000) * 1000000L;
    if (ms == 0) its.it_value.tv_nsec = 1;  // zero would disarm
    timerfd_settime(timer, 0, &its, nullptr);
  }

  // Schedules the next attempt and doubles the backoff up to the maximum.
  uint32_t schedule() {
    uint32_t ms = next_delay_ms;
    arm_timer(ms);
    next_delay_ms = uint32_t(std::min<uint64_t>(uint64_t(ms) * 2, o.reconnect_max_ms));
    return ms;
  }

  void try_connect() {
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int e = 0;
    if (s < 0) {
      e = errno;
    } else {
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      memcpy(sa.sun_path, addr.data(), addr.size());  // length checked by connect_path
      // A unix stream connect completes at once or fails; EAGAIN means the
      // router's backlog is full, which is retried like a refusal.
      if (connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) e = errno;
    }
    if (e != 0) {
      if (s >= 0) close(s);
      failures++;
      uint32_t retry = schedule();
      event(DeviceEvent::Type::ConnectFailed, errno_text(("connect " + addr).c_str(), e), failures, retry);
      return;
    }
    set_sndbuf(s, o.sndbuf);
    sock = s;
    sock_gen++;
    want_out = false;
    if (!add(sock, EPOLLIN, kTagSocket | (sock_gen << 8))) {
      int ee = errno;
      close(sock);
      sock = -1;
      failures++;
      uint32_t retry = schedule();
      event(DeviceEvent::Type::ConnectFailed, errno_text("epoll_ctl", ee), failures, retry);
      return;
    }
    failures = 0;
    connected_at = std::chrono::steady_clock::now();
    if (ever_connected) d.reconnects_.fetch_add(1, std::memory_order_relaxed);
    ever_connected = true;
    d.connected_.store(true);
    event(DeviceEvent::Type::Connected);
    // The hello follows the first packet forwarded on this connection (from
    // that packet's source), never precedes it: a uWSGI router writes every
    // frame to its tun, and a write before its link is up fails with EIO,
    // which kills its router process. Real traffic would do the same.
  }

  void send_hello(uint32_t src) {
    hello_sent = true;
    uint8_t hello[kHelloLen];
    hello_build(hello, src, my_caps, uint16_t(std::min<size_t>(o.max_frame, kMaxFramePayload)));
    queue(hello, kHelloLen, kModHello);
    d.to_router_packets_.fetch_sub(1, std::memory_order_relaxed);  // not a packet
    d.to_router_bytes_.fetch_sub(kHelloLen, std::memory_order_relaxed);
  }

  // The router answered: offloads on for this connection (those it takes).
  void on_hello(const uint8_t* payload, size_t len) {
    uint16_t caps, max;
    if (!vnet || !hello_parse(payload, len, &caps, &max) || !(caps & kCapCsum)) {
      d.count_drop(Drop::BadHello);
      return;
    }
    if (negotiated) return;
    unsigned flags = TUN_F_CSUM;
    if ((caps & kCapTso4) && (my_caps & kCapTso4)) flags |= TUN_F_TSO4;
    if ((caps & kCapUso4) && (my_caps & kCapUso4)) flags |= TUN_F_USO4 | TUN_F_USO6;
    std::string err;
    if (tun_set_offload(tun, flags, &err) < 0) {
      event(DeviceEvent::Type::Error, err + "; offloads stay off");
      return;
    }
    router_caps = caps & kCapAll;
    negotiated = true;
    handoff_pending = o.handoff && (caps & kCapHandoff);
    in_limit = kMaxFramePayload;
    d.offload_.store(true);
  }

  void disconnect(const std::string& reason) {
    if (sock < 0) return;
    epoll_ctl(ep, EPOLL_CTL_DEL, sock, nullptr);
    close(sock);
    sock = -1;
    want_out = false;
    // Queued bytes may end in a partial frame: they must not start the next
    // connection. Unparsed inbound bytes belong to the old stream too.
    out_head = out_tail = 0;
    uso = UsoRun();
    in_len = 0;
    drain_stash();  // sock is gone: a batch's waiting packets count as dropped while disconnected
    d.connected_.store(false);
    handoff_pending = false;
    if (handed_off) {
      handed_off = false;  // the tun is ours again
      d.handoff_.store(false);
    }
    resume_tun();
    if (negotiated) {
      // The next router may be a uWSGI one: plain until it answers a hello.
      std::string err;
      if (tun_set_offload(tun, 0, &err) < 0) event(DeviceEvent::Type::Error, err);
      negotiated = false;
      d.offload_.store(false);
    }
    hello_sent = false;
    in_limit = o.max_frame;
    event(DeviceEvent::Type::Disconnected, reason);
    // A connection that lived a while earns a fast retry; one that broke at
    // once keeps backing off (a router that accepts and closes in a loop).
    auto lived = std::chrono::steady_clock::now() - connected_at;
    if (lived >= std::chrono::milliseconds(o.reconnect_max_ms)) next_delay_ms = o.reconnect_min_ms;
    schedule();
  }

  void set_want_out(bool on) {
    if (on == want_out || sock < 0) return;
    epoll_event ev{};
    ev.events = on ? uint32_t(EPOLLIN | EPOLLOUT) : uint32_t(EPOLLIN);
    ev.data.u64 = kTagSocket | (sock_gen << 8);
    epoll_ctl(ep, EPOLL_CTL_MOD, sock, &ev);
    want_out = on;
  }

  // Sends everything queued in as few send() calls as the socket allows.
  void flush() {
    for (;;) {
      close_run();
      while (sock >= 0 && out_tail > out_head) {
        ssize_t n = send(sock, out.data() + out_head, out_tail - out_head, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          out_head += size_t(n);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          set_want_out(true);
          return;
        }
        disconnect(n == 0 ? std::string("write: nothing written") : errno_text("write", errno));
        return;
      }
      out_head = out_tail = 0;
      if (stash_end == 0) break;
      drain_stash();  // the queue is empty: the batch's rest goes in
    }
    if (handoff_pending && !hand_off()) return;
    set_want_out(false);
    resume_tun();
  }

  // Everything read from the tun so far has gone to the router: the tun
  // itself goes now, behind it on the same stream. Reads stop first, so
  // no packet is read here after the router began reading. false: the
  // socket is full (EPOLLOUT retries) or broke (disconnected).
  bool hand_off() {
    pause_tun();
    const int e = send_handoff(sock, tun);
    if (e == EAGAIN || e == EWOULDBLOCK) {
      set_want_out(true);
      return false;
    }
    handoff_pending = false;
    if (e != 0) {
      disconnect(errno_text("handoff", e));
      return false;
    }
    handed_off = true;
    d.handoff_.store(true);
    d.handoffs_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  // Queues the stashed packets while the queue has room for each; the rest
  // stays (a connected, negotiated peer only waits: others never stash).
  void drain_stash() {
    for (; stash_next < stash_end; stash_next++) {
      const int r = tun_batch.result(stash_next);
      if (r <= 0) continue;
      if (sock >= 0 && negotiated && queue_room() < kFrameHeaderSize + size_t(r)) return;
      from_tun(tun_batch.slot(stash_next), size_t(r));
    }
    stash_next = stash_end = 0;
  }

  // With super-packets a full queue would drop up to 64 KB at once: instead
  // the tun is not read until the socket took the queue (flush resumes it).
  void pause_tun() {
    if (tun_paused) return;
    epoll_event ev{};
    ev.data.u64 = kTagTun;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, tun, &ev) == 0) tun_paused = true;
  }

  void resume_tun() {
    if (!tun_paused || handed_off) return;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kTagTun;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, tun, &ev) == 0) tun_paused = false;
  }

  size_t queue_room() const { return o.queue_bytes - (out_tail - out_head); }

  void on_tun() {
    if (stash_end != 0 || handed_off) return;  // packets of the last batch still wait for the socket; or the router reads the tun
    size_t packets = 0, bytes = 0;
    for (int i = 0; i < kTunBatch;) {
      // Room in the queue for one super-packet a read, or the tun waits.
      const size_t max_read = kFrameHeaderSize + kMaxFramePayload;
      if (negotiated && queue_room() < max_read) {
        if (!want_out) flush();
        if (sock >= 0 && queue_room() < max_read) {
          pause_tun();
          break;
        }
      }
      if (tun_batch.wanted()) {
        const unsigned n = tun_batch.next(size_t(kTunBatch - i));
        if (tun_batch.read(n) != n) continue;  // io_uring failed: read() from here on
        bool drained = false;
        for (unsigned k = 0; k < n; k++) {
          const int r = tun_batch.result(k);
          if (TunBatch::empty(r)) {
            drained = true;
          } else if (r < 0) {
            return tun_failed(-r);
          } else {
            packets++;
            bytes += size_t(r);
          }
        }
        stash_next = 0;
        stash_end = n;
        drain_stash();
        if (stash_end != 0) {  // the queue is full: the socket first
          if (!want_out) flush();
          if (stash_end != 0) {
            pause_tun();
            break;
          }
        }
        i += int(n);
        tun_batch.after_call(drained, packets);
        if (drained) break;
        continue;
      }
      ssize_t n = read(tun, scratch.data(), scratch.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return tun_failed(errno);
      }
      i++;
      packets++;
      bytes += size_t(n);
      from_tun(scratch.data(), size_t(n));
    }
    tun_batch.after_wakeup(packets, bytes);  // super-packets: read() in place next time
    if (!want_out) flush();  // with EPOLLOUT armed, the socket's turn will flush
  }

  void tun_failed(int e) {
    event(DeviceEvent::Type::Error, errno_text("tun read", e) + "; device loop stopped");
    running = false;
  }

  // One packet read from the tun, buf[0..len) (a virtio_net_hdr first with vnet).
  void from_tun(uint8_t* buf, size_t len) {
    d.bp_.moved();
    if (sock < 0) {
      d.disconnected_drops_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (vnet) return from_vnet_tun(buf, len);
    Drop why;
    if (!ipv4_check(buf, len, &why)) return d.count_drop(why);
    send_plain(buf, len);
  }

  // One checked IPv4 packet to the router as a plain frame (too big: fragment
  // or ICMP).
  void send_plain(const uint8_t* pkt, size_t len) {
    if (len > o.max_frame) return too_big(pkt, len);
    queue(pkt, len);
  }

  // buf[0..n) = virtio_net_hdr + packet, read from our vnet tun.
  void from_vnet_tun(uint8_t* buf, size_t n) {
    if (n < kVnetHdrLen) return d.count_drop(Drop::Short);
    const virtio_net_hdr h = vnet_read(buf);
    uint8_t* pkt = buf + kVnetHdrLen;
    const size_t len = n - kVnetHdrLen;
    Drop why;
    if (!ipv4_check(pkt, len, &why)) return d.count_drop(why);
    if (negotiated && (vnet_needs(h) & ~router_caps) == 0 && n <= kMaxFramePayload &&
        vnet_segment_len(h, pkt, len) <= o.max_frame) {
      const int payload = (kUsoCoalesce && (router_caps & kCapUso4)) ? uso_payload(h, pkt, len) : -1;
      if (uso_fits(uso, pkt, len, payload, kUsoMaxPacket) && out_tail + size_t(payload) <= out.size() &&
          queue_room() >= size_t(payload)) {
        // Same flow as the run just before it: its payload joins the run.
        uso_append(&uso, pkt, len);
        out_tail += size_t(payload);
        d.to_router_packets_.fetch_add(1, std::memory_order_relaxed);
        d.to_router_bytes_.fetch_add(size_t(payload), std::memory_order_relaxed);
        return;
      }
      d.vnet_tx_.fetch_add(1, std::memory_order_relaxed);
      if (h.gso_type != VIRTIO_NET_HDR_GSO_NONE) d.gso_tx_.fetch_add(1, std::memory_order_relaxed);
      if (queue(buf, n, kModVnet) && payload >= 0) {
        run_off = out_tail - kFrameHeaderSize - n;
        uso_start(&uso, out.data() + run_off + kFrameHeaderSize, n, payload);
      }
      return;
    }
    if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE) {
      // One packet (its checksum perhaps still to finish): finished in place.
      GsoError e;
      if (!vnet_plain(h) && !vnet_finish_single(h, pkt, len, &e)) return d.count_drop(Drop::BadVnet);
      send_plain(pkt, len);
    } else {
      GsoError e;
      const int segs = gso_split(h, pkt, len, segbuf.data(), segbuf.size(), &Loop::split_sink, this, &e);
      if (segs < 0) return d.count_drop(Drop::BadVnet);
      d.gso_split_.fetch_add(1, std::memory_order_relaxed);
      d.gso_segments_.fetch_add(uint64_t(segs), std::memory_order_relaxed);
    }
    if (!hello_sent) send_hello(ipv4_src(pkt));
  }

  static void split_sink(void* ctx, const uint8_t* seg, size_t len) {
    static_cast<Loop*>(ctx)->send_plain(seg, len);
  }

  // Ends the open USO run: its frame gets its final length and headers.
  void close_run() {
    if (uso.count == 0) return;
    const uint32_t segs = uso.count;
    const size_t n = uso_finish(&uso);
    encode_frame_header(out.data() + run_off, uint16_t(n), kModVnet);
    if (segs > 1) {
      d.uso_tx_.fetch_add(1, std::memory_order_relaxed);
      d.uso_segments_.fetch_add(segs, std::memory_order_relaxed);
    }
  }

  // Appends one frame to the outbound queue (or drops and counts it).
  bool queue(const uint8_t* pkt, size_t len, uint8_t mod2 = kModPacket) {
    close_run();
    const size_t need = kFrameHeaderSize + len;
    if (out_tail - out_head + need > o.queue_bytes) {
      d.count_drop(Drop::QueueFull);
      return false;
    }
    if (out_tail + need > out.size()) {  // slide the pending bytes to the front
      memmove(out.data(), out.data() + out_head, out_tail - out_head);
      out_tail -= out_head;
      out_head = 0;
    }
    encode_frame_header(out.data() + out_tail, uint16_t(len), mod2);
    memcpy(out.data() + out_tail + kFrameHeaderSize, pkt, len);
    out_tail += need;
    d.to_router_packets_.fetch_add(1, std::memory_order_relaxed);
    d.to_router_bytes_.fetch_add(len, std::memory_order_relaxed);
    return true;
  }

  // A packet above the frame limit, as the router treats one (router.cc
  // too_big): DF clear -> fragmented to fit; DF set -> dropped (too_big) and
  // ICMP fragmentation-needed written back to the local tun, from the
  // packet's destination, at most kIcmpPerSecond a second.
  void too_big(const uint8_t* pkt, size_t len) {
    if (!ipv4_df(pkt) && ipv4_fragment(pkt, len, o.max_frame, frag.data(),
                                       [&](const uint8_t* f, size_t flen) { queue(f, flen); }) > 0)
      return;
    d.count_drop(Drop::TooBig);
    if (!ipv4_df(pkt)) return;
    const auto t = std::chrono::steady_clock::now();
    if (t - icmp_window >= std::chrono::seconds(1)) {
      icmp_window = t;
      icmp_budget = kIcmpPerSecond;
    }
    if (icmp_budget == 0) return;
    uint8_t icmp[128];
    const size_t n = icmp_frag_needed(pkt, len, uint16_t(o.max_frame), ipv4_dst(pkt), icmp, sizeof icmp);
    if (n == 0) return;
    icmp_budget--;
    (void)write_tun(icmp, n);
  }

  // One packet to the tun; a vnet tun gets a zero header in front.
  bool write_tun(const uint8_t* pkt, size_t len) { return tun_write(tun, pkt, len, vnet); }

  void on_frame(const FrameHeader& h, const uint8_t* payload) {
    if (h.mod1 != 0 || (h.mod2 != kModPacket && h.mod2 != kModHello && h.mod2 != kModVnet)) {
      d.count_drop(Drop::BadModifier);
      return;
    }
    if (h.mod2 == kModHello) return on_hello(payload, h.size);
    Drop why;
    size_t plen = h.size;
    bool ok;
    if (h.mod2 == kModVnet) {
      virtio_net_hdr vh;
      if (!negotiated) return d.count_drop(Drop::NotNegotiated);
      if (!vnet_check(payload, h.size, &vh, &why)) return d.count_drop(why);
      ok = tun_write(tun, payload, h.size, false);
      if (ok) {
        d.vnet_rx_.fetch_add(1, std::memory_order_relaxed);
        if (vh.gso_type != VIRTIO_NET_HDR_GSO_NONE) d.gso_rx_.fetch_add(1, std::memory_order_relaxed);
      }
      plen -= kVnetHdrLen;
    } else {
      if (!ipv4_check(payload, h.size, &why)) return d.count_drop(why);
      ok = write_tun(payload, h.size);
    }
    if (!ok) return d.count_drop(Drop::TunWrite);
    d.from_router_packets_.fetch_add(1, std::memory_order_relaxed);
    d.from_router_bytes_.fetch_add(plen, std::memory_order_relaxed);
    d.bp_.moved();
  }

  void on_socket_in() {
    for (int r = 0; r < kSocketReads && sock >= 0; r++) {
      ssize_t n = read(sock, in.data() + in_len, in.size() - in_len);
      if (n == 0) {
        disconnect("router closed the connection");
        return;
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        disconnect(errno_text("read", errno));
        return;
      }
      in_len += size_t(n);
      size_t pos = 0;
      FrameHeader h;
      for (;;) {
        FrameStatus st = next_frame(in.data() + pos, in_len - pos, in_limit, &h);
        if (st == FrameStatus::NeedMore) break;
        if (st == FrameStatus::Oversize) {
          const FrameHeader bad = decode_frame_header(in.data() + pos);
          disconnect("protocol error: frame of " + std::to_string(bad.size) +
                     " bytes above the limit of " + std::to_string(in_limit));
          return;
        }
        on_frame(h, in.data() + pos + kFrameHeaderSize);
        pos += kFrameHeaderSize + h.size;
      }
      // Keep the partial frame; the buffer has room for a whole one after it.
      if (pos > 0) {
        memmove(in.data(), in.data() + pos, in_len - pos);
        in_len -= pos;
      }
      if (size_t(n) < in.size() / 2) return;  // drained, most likely
    }
  }

  void on_timer() {
    uint64_t expirations;
    if (read(timer, &expirations, sizeof expirations) != sizeof expirations) return;  // not due
    if (sock < 0) try_connect();
  }

  void run() {
    try_connect();
    epoll_event evs[8];
    while (running) {
      if (!events.empty()) {
        sink(std::move(events));
        events.clear();
      }
      int n = busy_epoll_wait(d.bp_, ep, evs, 8, -1, &warm);
      if (n < 0) {
        if (errno == EINTR) continue;
        event(DeviceEvent::Type::Error, errno_text("epoll_wait", errno) + "; device loop stopped");
        break;
      }
      for (int i = 0; i < n && running; i++) {
        const uint64_t tag = evs[i].data.u64 & 0xff;
        switch (tag) {
          case kTagStop:
            running = false;
            break;
          case kTagTun:
            on_tun();
            break;
          case kTagSocket:
            if ((evs[i].data.u64 >> 8) != sock_gen || sock < 0) break;  // an earlier connection's
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_socket_in();
            if (sock >= 0 && ((evs[i].events & EPOLLOUT) || (handoff_pending && !want_out))) flush();
            break;
          case kTagTimer:
            on_timer();
            break;
        }
      }
    }
    if (!events.empty()) sink(std::move(events));
  }
};

Device::Device(DeviceOptions opts) : opts_(std::move(opts)) {}

Device::~Device() { stop(); }

bool Device::start(EventSink sink, std::string* err) {
  if (started_) {
    *err = "device already started";
    return false;
  }
  if (opts_.max_frame == 0 || opts_.max_frame > kMaxFramePayload) {
    *err = "maxFrame must be 1-" + std::to_string(kMaxFramePayload);
    return false;
  }
  if (opts_.queue_bytes < kFrameHeaderSize + opts_.max_frame) {
    *err = "queueBytes must hold at least one frame (" + std::to_string(kFrameHeaderSize + opts_.max_frame) + " bytes)";
    return false;
  }
  if (opts_.reconnect_min_ms == 0 || opts_.reconnect_max_ms < opts_.reconnect_min_ms) {
    *err = "reconnect delays must satisfy 0 < reconnectMinMs <= reconnectMaxMs";
    return false;
  }
  // With offloads a frame may be 64 KB: the queue holds a few of them.
  if (opts_.offload) opts_.queue_bytes = std::max<size_t>(opts_.queue_bytes, 4 * (kFrameHeaderSize + kMaxFramePayload));
  std::string addr;
  if (!connect_path(opts_, &addr, err)) return false;
  stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (stop_fd_ < 0) {
    *err = errno_text("eventfd", errno);
    return false;
  }
  std::promise<std::string> ready;
  std::future<std::string> result = ready.get_future();
  thread_ = std::thread([this, &ready, sink = std::move(sink), addr]() mutable {
    pthread_setname_np(pthread_self(), "moat-device");
    // No short slice here (the router's loop has one): in the vassal's
    // cgroup, beside the tenant's processes, it made round trips slower
    // (docs/latency.md, "The device keeps the kernel's slice").
    Loop loop(*this, std::move(sink), std::move(addr));
    std::string e;
    if (!loop.init(&e)) {
      ready.set_value(e.empty() ? std::string("device setup failed") : e);
      return;
    }
    ready.set_value(std::string());
    loop.run();
  });
  std::string e = result.get();
  if (!e.empty()) {
    thread_.join();
    close(stop_fd_);
    stop_fd_ = -1;
    *err = e;
    return false;
  }
  started_ = true;
  return true;
}

void Device::stop() {
  if (!started_) return;
  started_ = false;
  uint64_t one = 1;
  ssize_t w = write(stop_fd_, &one, sizeof one);
  (void)w;  // an eventfd write only fails on overflow, and one is pending then
  if (thread_.joinable()) thread_.join();
  close(stop_fd_);
  stop_fd_ = -1;
}

DeviceStatsSnapshot Device::stats() const {
  DeviceStatsSnapshot s;
  s.connected = connected_.load();
  s.reconnects = reconnects_.load(std::memory_order_relaxed);
  s.to_router_packets = to_router_packets_.load(std::memory_order_relaxed);
  s.to_router_bytes = to_router_bytes_.load(std::memory_order_relaxed);
  s.from_router_packets = from_router_packets_.load(std::memory_order_relaxed);
  s.from_router_bytes = from_router_bytes_.load(std::memory_order_relaxed);
  for (int i = 0; i < kDropCount; i++) s.drops[i] = drops_[i].load(std::memory_order_relaxed);
  s.disconnected_drops = disconnected_drops_.load(std::memory_order_relaxed);
  s.offload = offload_.load();
  s.handoff = handoff_.load();
  s.handoffs = handoffs_.load();
  s.vnet_tx = vnet_tx_.load(std::memory_order_relaxed);
  s.gso_tx = gso_tx_.load(std::memory_order_relaxed);
  s.vnet_rx = vnet_rx_.load(std::memory_order_relaxed);
  s.gso_rx = gso_rx_.load(std::memory_order_relaxed);
  s.gso_split = gso_split_.load(std::memory_order_relaxed);
  s.gso_segments = gso_segments_.load(std::memory_order_relaxed);
  s.uso_tx = uso_tx_.load(std::memory_order_relaxed);
  s.uso_segments = uso_segments_.load(std::memory_order_relaxed);
  s.busy_polls = bp_.polls();
  s.busy_poll_caught = bp_.caught();
  s.busy_poll_ns = bp_.poll_ns();
  return s;
}

}  // namespace moat
