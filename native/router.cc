// router.cc: the router's loop thread (see router.h for its job, limits and
// syscalls). Read top-down: setup (netns, tun, socket), the loop, the two
// directions (route_up: peer -> tun, route_down: tun -> peer), address
// learning, then the control side (rules, bindings, events, stats, stop).
#include "router.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <deque>
#include <unordered_map>

#include "busy_poll.h"
#include "classifier.h"
#include "coalesce.h"
#include "frame.h"
#include "mono_clock.h"
#include "offload.h"
#include "peer.h"
#include "sndbuf.h"
#include "tun.h"

namespace moat {
namespace {

constexpr size_t kTunBatch = 64;            // packets read from the tun per wakeup
constexpr size_t kTunBufSize = 65536 + 16;  // one IPv4 packet at most, with a virtio_net_hdr
constexpr size_t kArenaSize = 512 * 1024;   // one batch of frames read from the tun
constexpr int kMaxIov = 64;                 // iovecs per sendmsg (adjacent frames merge)
constexpr size_t kPeerInMin = 65536;        // a peer's input buffer, at least
constexpr int kEpollEvents = 64;
constexpr int kAcceptBatch = 16;
constexpr size_t kMaxPendingEvents = 65536; // beyond: events are dropped (JS not draining)
constexpr uint64_t kSecond = 1000000000ull;
constexpr uint32_t kIcmpPerSecond = 100;    // fragmentation-needed answers
constexpr uint64_t kAcceptPause = 200000000ull;      // accept failing (out of fds): retry after 200 ms
// Merge runs of same-flow UDP datagrams for offload peers (coalesce.h); the
// IPv4 super-packet stays within the tuns' gso_max_size.
constexpr bool kUsoCoalesce = true;
constexpr size_t kUsoMaxPacket = kTunGsoMaxSize;
constexpr uint64_t kAcceptReportEvery = 10 * kSecond; // while it keeps failing, one event per 10 s
// Holding (opts.hold_us): a peer stops waiting once this many frames or
// bytes are held for it; a write that carries them pays off its cost.
constexpr uint32_t kHoldFrames = 16;
constexpr size_t kHoldBytes = 16384;
constexpr size_t kReleaseBatch = 64;  // held peers written per loop turn

// epoll tags of the fixed fds; peers are tagged with their Peer*, never this small.
constexpr uint64_t kTagTun = 1, kTagListen = 2, kTagControl = 3;

std::string errno_text(const std::string& what, int e = errno) {
  return what + ": " + strerror(e);
}

bool bad_source(uint32_t a) {
  return a == 0 || a == 0xffffffffu || (a >> 28) == 0xe;  // 0.0.0.0, broadcast, 224/4
}

}  // namespace

// One compiled chain with its per-rule hit counters.
struct Chain {
  std::unique_ptr<Classifier> cls;
  std::unique_ptr<Counter[]> hits;
  std::vector<uint8_t> deny;  // per rule: the action is deny
  size_t size = 0;

  explicit Chain(std::vector<Rule> rules) {
    size = rules.size();
    deny.resize(size);
    for (size_t i = 0; i < size; i++) deny[i] = rules[i].action == Action::Deny;
    hits.reset(new Counter[size ? size : 1]);
    cls.reset(new Classifier(std::move(rules)));
  }

  // true if the packet may pass; counts the hit of the rule that judged it.
  bool pass(const uint8_t* pkt, size_t len) const {
    if (size == 0) return true;
    const int32_t r = cls->match(ipv4_key(pkt, len));
    if (r < 0 || size_t(r) >= size) return true;
    hits[r].add(1);
    return !deny[r];
  }

  // Rule i inherits old's counter carry[i] (out of range or -1: starts at 0).
  void inherit(const Chain& old, const std::vector<int32_t>& carry) {
    for (size_t i = 0; i < size && i < carry.size(); i++) {
      const int32_t c = carry[i];
      if (c >= 0 && size_t(c) < old.size) hits[i].set(old.hits[c].get());
    }
  }
};

struct RuleSet {
  Chain in, out;
  std::vector<int32_t> carry_in, carry_out;  // against the rule set current when it was made
  RuleSet(std::vector<Rule> i, std::vector<Rule> o) : in(std::move(i)), out(std::move(o)) {}
};

// What controlling threads hand to the loop (taken when the eventfd fires).
struct Router::Pending {
  std::mutex mu;
  std::unique_ptr<RuleSet> rules;
  bool have_bindings = false;
  std::vector<Binding> bindings;
  std::atomic<bool> stop{false};
  // relisten(): asked by the controller, answered by the loop.
  std::condition_variable relisten_cv;
  bool relisten = false, relisten_done = false, relisten_ok = false;
  std::string relisten_err;
};

struct Router::Loop {
  const RouterOptions& opts;
  std::function<void()> wake;
  Pending* pending = nullptr;
  int control = -1;

  int tun = -1, listen_fd = -1, epfd = -1;
  bool socket_ours = false;
  dev_t sock_dev = 0;
  ino_t sock_ino = 0;

  // Shared with stats(): the structure (peer list, rule set) changes under
  // stats_mu; counters are single-writer relaxed atomics.
  mutable std::mutex stats_mu;
  std::vector<std::unique_ptr<Peer>> peers;
  std::unique_ptr<RuleSet> rules;
  Counter tun_rx, tun_rx_bytes, tun_tx, tun_tx_bytes;
  Counter fragmented, frag_needed;  // packets split for a peer; ICMP answers sent
  Counter split_packets, split_segments;  // super-packets split for a plain peer; segments made
  Counter drops[kDropCount];

  // Events for JS.
  std::mutex ev_mu;
  std::vector<RouterEvent> events;
  std::atomic<bool> wake_pending{false};
  bool new_events = false;

  // Loop thread only.
  std::unordered_map<uint32_t, Peer*> by_addr;
  // Bindings (router.h): by pid, by uid (pid -1), and every binding by address.
  std::unordered_map<uint32_t, Binding> bind_of_pid;
  std::unordered_map<uint32_t, uint32_t> addr_of_uid;
  std::unordered_map<uint32_t, std::vector<Binding>> bindings_of_addr;
  std::vector<Peer*> dirty;
  // Peers with held frames, oldest hold first. An entry is current while its
  // peer is held since `since`; a peer written and held again leaves a stale
  // entry, skipped when reached. close_peer() removes a peer's entries.
  struct HeldRef {
    Peer* p;
    uint64_t since;
  };
  std::deque<HeldRef> held;
  BusyPoll busy;  // polling after traffic (busy_poll.h)
  uint64_t hold_ns = 0;    // opts.hold_us; 0: never hold
  bool backlog = false;    // the last tun batch ended with packets still queued
  Counter held_frames, held_writes;
  std::vector<std::unique_ptr<Peer>> graveyard;  // closed this wakeup, freed at its end
  // The down batch: frames built in place in the arena; slots chain each
  // peer's frames in order (Peer::batch_head/tail index them).
  struct Slot {
    uint8_t* ptr;
    uint32_t len;
    int32_t next;
    uint32_t segs;  // datagrams in the frame (> 1: a USO run merged here)
  };
  std::unique_ptr<uint8_t[]> arena{new uint8_t[kArenaSize]};
  size_t arena_len = 0;
  std::vector<Slot> slots;
  std::unique_ptr<uint8_t[]> fragbuf{new uint8_t[kMaxFramePayload]};
  std::unique_ptr<uint8_t[]> fragsrc{new uint8_t[kTunBufSize]};
  // Offloads (opts.offload): the tun carries a virtio_net_hdr before every
  // packet; super-packets for plain peers are copied to gsosrc and split
  // into segbuf. caps: what our tun takes (sent in our hello).
  bool vnet = false;
  uint16_t caps = 0;
  std::unique_ptr<uint8_t[]> gsosrc, segbuf;
  Peer* split_peer = nullptr;  // the peer a split is for (gso_split's sink)
  // The open USO run (coalesce.h) for run_peer: the last frame in the arena
  // (slot run_slot; the next datagram is read right behind it), or with
  // run_slot -1 the last frame in run_peer's queue (at run_qoff). Closed
  // before anything else is delivered and at the end of the batch, before
  // any send.
  UsoRun uso;
  Peer* run_peer = nullptr;
  int32_t run_slot = -1;
  size_t run_qoff = 0;
  Counter uso_frames, uso_segments;
  uint64_t icmp_window = 0;
  uint32_t icmp_budget = 0;
  std::vector<uint32_t> gateway;  // the tun's own addresses, cached
  uint64_t gateway_at = 0;
  uint64_t now = 0;
  uint64_t last_sweep = 0;
  // Accepting paused (accept4 failed: out of fds, out of memory): the listen
  // fd is level-triggered, so without a pause the loop would spin. 0: not paused.
  uint64_t accept_resume_at = 0;
  uint64_t accept_reported_at = 0;  // the last pause reported (0: none since accepting worked)
  uint64_t accept_pauses = 0;       // pauses since then
  bool refused_pending = false;
  uint32_t next_id = 1;

  explicit Loop(const RouterOptions& o) : opts(o), rules(new RuleSet({}, {})), hold_ns(uint64_t(o.hold_us) * 1000) {
    set_bindings(o.bindings);
    dirty.reserve(256);
    slots.reserve(1024);
  }

  // ---- setup and teardown -------------------------------------------------

  bool init(std::string* err) {
    busy.configure(opts.busy_poll_us);
    if (!enter_netns(opts.netns, err)) return false;
    vnet = opts.offload;
    tun = tun_open(opts.tun_name, vnet, kTunGsoMaxSize, err);
    if (tun < 0) return false;
    if (vnet) {
      // TSO6 is not asked for: IPv6 is not routed. USO needs both USO flags.
      const int f = tun_set_offload(tun, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_USO4 | TUN_F_USO6, err);
      if (f < 0) return false;
      caps = kCapCsum | kCapTso4 | ((f & TUN_F_USO4) ? kCapUso4 : 0);
      gsosrc.reset(new uint8_t[kTunBufSize]);
      segbuf.reset(new uint8_t[kTunBufSize]);
    }
    if (!open_socket(err)) return false;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
      *err = errno_text("epoll_create1");
      return false;
    }
    if (!watch(tun, kTagTun, EPOLLIN) || !watch(listen_fd, kTagListen, EPOLLIN) ||
        !watch(control, kTagControl, EPOLLIN)) {
      *err = errno_text("epoll_ctl");
      return false;
    }
    return true;
  }

  bool watch(int fd, uint64_t tag, uint32_t ev) {
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = ev;
    e.data.u64 = tag;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) == 0;
  }

  // The listening socket: a stale file (a socket nobody listens on) is
  // replaced; a live socket or any other file is refused.
  bool open_socket(std::string* err) {
    const std::string& path = opts.socket_path;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof sa.sun_path) {
      *err = "socket path must be 1-" + std::to_string(sizeof sa.sun_path - 1) + " bytes: " + path;
      return false;
    }
    memcpy(sa.sun_path, path.data(), path.size());
    const socklen_t salen = socklen_t(offsetof(struct sockaddr_un, sun_path) + path.size() + 1);

    struct stat st;
    if (lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        *err = "socket path " + path + " exists and is not a socket";
        return false;
      }
      int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (probe < 0) {
        *err = errno_text("socket");
        return false;
      }
      const int r = connect(probe, reinterpret_cast<struct sockaddr*>(&sa), salen);
      const int e = errno;
      close(probe);
      if (r == 0 || e == EAGAIN) {
        *err = "socket " + path + " is in use by another process";
        return false;
      }
      if (e != ECONNREFUSED) {
        *err = errno_text("probing socket " + path, e);
        return false;
      }
      if (unlink(path.c_str()) != 0 && errno != ENOENT) {
        *err = errno_text("removing stale socket " + path);
        return false;
      }
    }

    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0) {
      *err = errno_text("socket");
      return false;
    }
    if (bind(listen_fd, reinterpret_cast<struct sockaddr*>(&sa), salen) != 0) {
      *err = errno_text("bind " + path);
      return false;
    }
    if (stat(path.c_str(), &st) != 0) {
      *err = errno_text("stat " + path);
      return false;
    }
    socket_ours = true;
    sock_dev = st.st_dev;
    sock_ino = st.st_ino;
    if (chmod(path.c_str(), opts.socket_mode & 07777) != 0) {
      *err = errno_text("chmod " + path);
      return false;
    }
    if (opts.socket_uid >= 0 || opts.socket_gid >= 0) {
      if (chown(path.c_str(), opts.socket_uid >= 0 ? uid_t(opts.socket_uid) : uid_t(-1),
                opts.socket_gid >= 0 ? gid_t(opts.socket_gid) : gid_t(-1)) != 0) {
        *err = errno_text("chown " + path);
        return false;
      }
    }
    if (listen(listen_fd, SOMAXCONN) != 0) {
      *err = errno_text("listen " + path);
      return false;
    }
    return true;
  }

  // Closes everything; the socket file goes only if it is still the one we made.
  void teardown() {
    {
      std::lock_guard<std::mutex> g(stats_mu);
      for (auto& p : peers)
        if (p->fd >= 0) close(p->fd);
      peers.clear();
    }
    by_addr.clear();
    dirty.clear();
    graveyard.clear();
    close_socket();
    if (tun >= 0) close(tun);
    tun = -1;
    if (epfd >= 0) close(epfd);
    epfd = -1;
  }

  // Closes the listening socket; its file goes only if it is still the one we made.
  void close_socket() {
    if (listen_fd >= 0) close(listen_fd);
    listen_fd = -1;
    if (socket_ours) {
      struct stat st;
      if (lstat(opts.socket_path.c_str(), &st) == 0 && st.st_dev == sock_dev && st.st_ino == sock_ino)
        unlink(opts.socket_path.c_str());
      socket_ours = false;
    }
  }

  // The socket file (or its directory) was removed under us: new peers cannot
  // reach the old socket by name, connected peers are unaffected. Binds a new
  // listening socket at the same path and swaps it in; on failure the old one
  // stays. A path still naming our socket needs nothing.
  bool relisten(std::string* err) {
    struct stat st;
    if (socket_ours && lstat(opts.socket_path.c_str(), &st) == 0 && st.st_dev == sock_dev &&
        st.st_ino == sock_ino)
      return true;
    const int old_fd = listen_fd;
    const dev_t old_dev = sock_dev;
    const ino_t old_ino = sock_ino;
    listen_fd = -1;
    socket_ours = false;
    bool ok = open_socket(err);
    if (ok && !watch(listen_fd, kTagListen, accept_resume_at != 0 ? 0u : uint32_t(EPOLLIN))) {
      *err = errno_text("epoll_ctl (listen)");
      ok = false;
    }
    if (!ok) {
      close_socket();
      listen_fd = old_fd;
      sock_dev = old_dev;
      sock_ino = old_ino;
      return false;  // socket_ours stays false: the old file is not ours to unlink
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, old_fd, nullptr);
    close(old_fd);
    return true;
  }

  // ---- the loop -----------------------------------------------------------

  void run() {
    struct epoll_event evs[kEpollEvents];
    bool stopping = false;
    while (!stopping) {
      const int n = busy_epoll_wait(busy, epfd, evs, kEpollEvents, wait_ms());
      if (n < 0) {
        if (errno == EINTR) continue;
        emit_error(errno_text("epoll_wait"));
        publish();
        return;
      }
      now = mono_ns();
      // Control first: a rule change made before a packet was sent judges it.
      for (int i = 0; i < n; i++)
        if (evs[i].data.u64 == kTagControl) stopping = on_control();
      bool tun_event = false;
      for (int i = 0; i < n; i++) {
        const uint64_t tag = evs[i].data.u64;
        if (tag == kTagControl) {
          continue;
        } else if (tag == kTagTun) {
          tun_event = true;
          on_tun(evs[i].events);
        } else if (tag == kTagListen) {
          on_accept();
        } else {
          Peer* p = static_cast<Peer*>(evs[i].data.ptr);
          if (!p->dead && (evs[i].events & EPOLLOUT)) flush(p);
          if (!p->dead && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_peer_readable(p);
        }
      }
      // Held frames and a tun with nothing to read (level-triggered: no
      // event): the backlog is gone, write them.
      if (!held.empty() && !tun_event) release_held(true);
      if (accept_resume_at != 0 && now >= accept_resume_at) resume_accept();
      if (now - last_sweep >= kSecond) sweep_refused();
      graveyard.clear();
      publish();
    }
  }

  // ---- down: tun -> peers -------------------------------------------------

  void on_tun(uint32_t ev) {
    if (ev & (EPOLLERR | EPOLLHUP)) return tun_lost("tun device " + opts.tun_name + " failed (deleted?)");
    // Packets are read straight into the batch arena, 4 bytes after the
    // write position, so each frame (header + packet) is built in place and
    // sent from there: no copy into a peer's queue unless a send falls short.
    arena_len = 0;
    backlog = true;
    for (size_t k = 0; k < kTunBatch && arena_len + kFrameHeaderSize + kTunBufSize <= kArenaSize; k++) {
      uint8_t* buf = arena.get() + arena_len + kFrameHeaderSize;
      const ssize_t n = read(tun, buf, kTunBufSize);
      if (n < 0) {
        if (errno == EINTR) continue;
        backlog = false;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        tun_lost(errno_text("read from tun device " + opts.tun_name));
        break;
      }
      if (n == 0) {
        backlog = false;
        break;
      }
      tun_rx.add(1);
      tun_rx_bytes.add(uint64_t(n));
      busy.moved();
      if (vnet) route_down_vnet(buf, size_t(n));
      else route_down(buf, size_t(n));
    }
    flush_batch();
    now = mono_ns();
    release_held(!backlog);
  }

  // The device is gone (`ip link del` under us: poll says EPOLLERR, read
  // EBADFD): nothing can be routed any more. Reported once as fatal (TS stops
  // the router); the tun is no longer watched, so the loop does not spin.
  void tun_lost(const std::string& why) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, tun, nullptr);
    RouterEvent e(RouterEvent::Type::Fatal);
    e.message = why + ": the router cannot route without its tun device";
    emit(std::move(e));
  }

  // The down path's judgement, the same for plain and vnet reads: a sane
  // IPv4 packet that the in chain passes, for a connected peer. Null: the
  // packet was dropped and counted.
  Peer* judge_down(const uint8_t* pkt, size_t len) {
    Drop why;
    if (!ipv4_check(pkt, len, &why)) return drop(nullptr, why), nullptr;
    auto it = by_addr.find(ipv4_dst(pkt));
    Peer* p = it == by_addr.end() ? nullptr : it->second;
    if (!rules->in.pass(pkt, len)) return drop(p, Drop::FirewallIn), nullptr;
    if (!p) return drop(nullptr, Drop::NoPeer), nullptr;
    return p;
  }

  void route_down(const uint8_t* pkt, size_t len) {
    Peer* p = judge_down(pkt, len);
    if (!p) return;
    if (len > p->send_max) return too_big(p, pkt, len);
    deliver(p, pkt, len);
  }

  // A read from the vnet tun: buf = virtio_net_hdr + IPv4 packet, in the
  // arena 4 bytes after arena_len. An offload peer that takes what the
  // header asks gets it whole as kModVnet (if each segment fits its limit);
  // a plain peer gets the packet, split first if it is a super-packet or
  // still needs its checksum.
  void route_down_vnet(uint8_t* buf, size_t n) {
    if (n < kVnetHdrLen) return drop(nullptr, Drop::Short);
    const virtio_net_hdr h = vnet_read(buf);
    uint8_t* pkt = buf + kVnetHdrLen;
    const size_t len = n - kVnetHdrLen;
    Peer* p = judge_down(pkt, len);
    if (!p) return;
    const uint16_t needs = vnet_needs(h);
    if (p->offload && (needs & ~p->caps) == 0 && n <= kMaxFramePayload &&
        vnet_segment_len(h, pkt, len) <= p->send_max) {
      const bool can_uso = kUsoCoalesce && (p->caps & (kCapUso4 | kCapCsum)) == (kCapUso4 | kCapCsum);
      const int payload = can_uso ? uso_payload(h, pkt, len) : -1;
      if (run_peer == p && uso_fits(uso, pkt, len, payload, kUsoMaxPacket) &&
          (run_slot >= 0 || p->out_head + p->out_len + size_t(payload) <= p->out_cap)) {
        // Same flow as the run just before it: its payload joins the run
        // (which ends where this packet was read, or at the queue's end).
        uso_append(&uso, pkt, len);
        if (run_slot >= 0) {
          arena_len += size_t(payload);
          slots[run_slot].segs++;
        } else {
          p->out_len += size_t(payload);
          p->tx.add(1);
        }
        return;
      }
      p->vnet_tx.add(1);
      if (h.gso_type != VIRTIO_NET_HDR_GSO_NONE) p->gso_tx.add(1);
      const size_t queued = p->out_len;
      deliver(p, buf, n, kModVnet);
      if (payload < 0) return;
      if (!slots.empty() && slots.back().ptr + kFrameHeaderSize == buf) {
        run_peer = p;
        run_slot = int32_t(slots.size() - 1);
        uso_start(&uso, buf, n, payload);
      } else if (p->out_len == queued + kFrameHeaderSize + n) {
        // Queued behind what p's socket has not taken yet: the run grows there.
        run_peer = p;
        run_slot = -1;
        run_qoff = p->out_head + p->out_len - kFrameHeaderSize - n;
        uso_start(&uso, p->out.get() + run_qoff + kFrameHeaderSize, n, payload);
      }
      return;
    }
    if (vnet_plain(h)) {
      if (len > p->send_max) return too_big(p, pkt, len);
      return deliver(p, pkt, len);
    }
    // Split a copy: deliver() builds frames where the packet sits now.
    memcpy(gsosrc.get(), pkt, len);
    GsoError e;
    split_peer = p;
    const int segs = gso_split(h, gsosrc.get(), len, segbuf.get(), kTunBufSize, &Loop::split_sink, this, &e);
    if (segs < 0) return drop(p, Drop::BadVnet);
    split_packets.add(1);
    split_segments.add(uint64_t(segs));
  }

  static void split_sink(void* ctx, const uint8_t* seg, size_t len) {
    Loop* l = static_cast<Loop*>(ctx);
    Peer* p = l->split_peer;
    if (p->dead) return;
    if (len > p->send_max) return l->too_big(p, seg, len);
    l->deliver(p, seg, len);
  }

  // Hands one packet to p: with nothing queued for p, as a frame in the batch
  // arena (pkt is either already there, 4 bytes after arena_len, or copied
  // there); else appended to p's queue, behind what waits. A frame that
  // could never fit p's queue is dropped as queue_full, as before.
  void deliver(Peer* p, const uint8_t* pkt, size_t len, uint8_t mod2 = kModPacket) {
    close_run();
    const size_t need = kFrameHeaderSize + len;
    if (p->out_len > 0 || need > p->out_cap) {
      if (!p->enqueue(pkt, len, mod2)) return drop(p, Drop::QueueFull);
      p->tx.add(1);
      if (p->held) {
        p->held_frames++;
        held_frames.add(1);
      }
    } else {
      if (pkt == arena.get() + arena_len + kFrameHeaderSize + kVnetHdrLen) {
        // Read from the vnet tun, going out plain: its header stays behind
        // as a 10-byte gap in the arena.
        arena_len += kVnetHdrLen;
      } else if (pkt != arena.get() + arena_len + kFrameHeaderSize) {
        // A fragment (built elsewhere): copied in; a full arena is flushed first.
        if (arena_len + need > kArenaSize) flush_batch();
        memcpy(arena.get() + arena_len + kFrameHeaderSize, pkt, len);
      }
      uint8_t* f = arena.get() + arena_len;
      encode_frame_header(f, static_cast<uint16_t>(len), mod2);
      arena_len += need;
      const int32_t slot = int32_t(slots.size());
      slots.push_back(Slot{f, uint32_t(need), -1, 1});
      if (p->batch_tail >= 0) slots[p->batch_tail].next = slot; else p->batch_head = slot;
      p->batch_tail = slot;
    }
    if (!p->dirty) {
      p->dirty = true;
      dirty.push_back(p);
    }
  }

  // Ends the open USO run: its frame (header, vnet header, IPv4 and UDP
  // fields) gets its final length.
  void close_run() {
    if (!run_peer) return;
    const uint32_t segs = uso.count;
    const size_t n = uso_finish(&uso);
    if (run_slot >= 0) {
      Slot& s = slots[run_slot];
      encode_frame_header(s.ptr, uint16_t(n), kModVnet);
      s.len = uint32_t(kFrameHeaderSize + n);
    } else {
      encode_frame_header(run_peer->out.get() + run_qoff, uint16_t(n), kModVnet);
    }
    if (segs > 1) {
      run_peer->uso_tx.add(1);
      uso_frames.add(1);
      uso_segments.add(segs);
    }
    run_peer = nullptr;
    run_slot = -1;
  }

  // Flushes every dirty peer and empties the arena: at the end of a tun
  // batch, or mid-batch when fragments fill the arena.
  void flush_batch() {
    close_run();
    for (Peer* p : dirty) {
      p->dirty = false;
      if (!p->dead && !hold(p)) flush(p);
      p->batch_head = p->batch_tail = -1;
    }
    dirty.clear();
    slots.clear();
    arena_len = 0;
  }

  // Spread traffic: with many peers, each gets one or two frames per tun
  // batch, and a write per frame (an skb and a wake-up of the peer's reader
  // each) costs several times the rest of the path. While the tun still has
  // a backlog, a peer's few frames wait in its queue (copied there) for later
  // ones, until it has kHoldFrames or kHoldBytes, or the oldest has waited
  // hold_ns, or the tun drains (release_held): one write then carries them
  // all. Light traffic is never held: a batch that empties the tun releases
  // everything at once. True: p's frames are held.
  bool hold(Peer* p) {
    if (hold_ns == 0 || !backlog || p->want_out) return false;
    uint32_t frames = p->held_frames;  // counted by deliver() as they were queued
    size_t bytes = p->out_len;
    for (int32_t s = p->batch_head; s >= 0; s = slots[s].next) {
      frames++;
      bytes += slots[s].len;
    }
    if (frames >= kHoldFrames || bytes > kHoldBytes || bytes > p->out_cap) return false;
    for (int32_t s = p->batch_head; s >= 0; s = slots[s].next) {
      p->append(slots[s].ptr, slots[s].len);
      p->tx.add(slots[s].segs);
    }
    held_frames.add(frames - p->held_frames);
    p->held_frames = frames;
    p->batch_head = p->batch_tail = -1;
    if (!p->held) {
      p->held = true;
      p->held_since = now;
      held.push_back(HeldRef{p, now});
    }
    return true;
  }

  // Writes held frames, oldest first: all of them when the tun drained, else
  // those held for hold_ns; at most kReleaseBatch writes per call, so the
  // loop reads the tun between them (a thousand writes in a row would let
  // the tun's queue overflow meanwhile). Peers already written are skipped.
  void release_held(bool all) {
    size_t writes = 0;
    while (!held.empty() && writes < kReleaseBatch) {
      const HeldRef h = held.front();
      const bool current = h.p->held && h.p->held_since == h.since;
      if (current && !all && now - h.since < hold_ns) break;
      held.pop_front();
      if (current && !h.p->dead) {
        flush(h.p);
        writes++;
      }
    }
  }

  // Sends p's frames of this batch with one sendmsg() (adjacent frames merged
  // into one iovec, so one peer's whole batch is usually one). What the
  // socket does not take is copied into p's queue: the rest of a frame cut in
  // the middle always (it fits: the queue is empty and a frame never exceeds
  // out_cap), then whole frames while they fit, the others dropped as
  // queue_full. tx counts the datagrams in the frames sent or queued.
  void send_batch(Peer* p) {
    struct iovec iov[kMaxIov];
    int n = 0;
    for (int32_t s = p->batch_head; s >= 0; s = slots[s].next) {
      const Slot& sl = slots[s];
      if (n > 0 && static_cast<uint8_t*>(iov[n - 1].iov_base) + iov[n - 1].iov_len == sl.ptr) {
        iov[n - 1].iov_len += sl.len;
      } else if (n < kMaxIov) {
        iov[n].iov_base = sl.ptr;
        iov[n].iov_len = sl.len;
        n++;
      } else {
        break;  // the rest goes to the queue below
      }
    }
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = iov;
    mh.msg_iovlen = size_t(n);
    ssize_t sent = sendmsg(p->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return close_peer(p, errno_text("write"));
      sent = 0;
    }
    p->tx_bytes.add(uint64_t(sent));
    size_t skip = size_t(sent);
    uint64_t kept = 0;
    for (int32_t s = p->batch_head; s >= 0; s = slots[s].next) {
      const Slot& sl = slots[s];
      if (skip >= sl.len) {
        skip -= sl.len;
        kept += sl.segs;
        continue;
      }
      if (skip > 0 || p->out_len + sl.len <= p->out_cap) {
        p->append(sl.ptr + skip, sl.len - skip);
        kept += sl.segs;
      } else {
        for (uint32_t i = 0; i < sl.segs; i++) drop(p, Drop::QueueFull);
      }
      skip = 0;
    }
    p->tx.add(kept);
  }

  // A packet bigger than the peer can read, as a router answers it: DF set ->
  // dropped (too_big) and ICMP fragmentation-needed with the peer's limit as
  // next-hop MTU goes back through the tun to the sender (from the peer's
  // address: the gateway's own address would be a martian source to a sender
  // on the gateway host); DF clear -> fragmented to fit. ICMP answers are
  // limited to kIcmpPerSecond (beyond: only counted).
  void too_big(Peer* p, const uint8_t* pkt, size_t len) {
    if (!ipv4_df(pkt)) {
      // pkt sits where deliver() builds the next frame: fragment a copy.
      memcpy(fragsrc.get(), pkt, len);
      const size_t n = ipv4_fragment(fragsrc.get(), len, p->send_max, fragbuf.get(),
                                     [&](const uint8_t* f, size_t flen) { deliver(p, f, flen); });
      if (n > 0) {
        fragmented.add(1);
        return;
      }
      return drop(p, Drop::TooBig);  // IP options: not fragmented here
    }
    drop(p, Drop::TooBig);
    if (now - icmp_window >= kSecond) {
      icmp_window = now;
      icmp_budget = kIcmpPerSecond;
    }
    if (icmp_budget == 0) return;
    uint8_t icmp[128];
    const size_t n = icmp_frag_needed(pkt, len, uint16_t(p->send_max), ipv4_dst(pkt), icmp, sizeof icmp);
    if (n == 0) return;
    icmp_budget--;
    if (write_tun(icmp, n, false)) frag_needed.add(1);
  }

  // One send() of everything queued; a partial write keeps the rest and waits
  // for EPOLLOUT.
  void flush(Peer* p) {
    if (run_peer == p) close_run();  // never send half a run
    if (p->held) {
      p->held = false;
      p->held_frames = 0;
      held_writes.add(1);
    }
    if (p->batch_head >= 0) send_batch(p);
    if (p->dead) return;
    if (p->out_len > 0) {
      const ssize_t n = send(p->fd, p->out.get() + p->out_head, p->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
          return close_peer(p, errno_text("write"));
      } else {
        p->tx_bytes.add(uint64_t(n));
        p->consumed(size_t(n));
      }
      p->queued.set(p->out_len);
    }
    want_out(p, p->out_len > 0);
  }

  void want_out(Peer* p, bool on) {
    if (p->want_out == on) return;
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = on ? uint32_t(EPOLLIN | EPOLLOUT) : uint32_t(EPOLLIN);
    e.data.ptr = p;
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, p->fd, &e) == 0) p->want_out = on;
  }

  // ---- up: peer -> tun ----------------------------------------------------

  // At most one read (one buffer-full) per peer per wakeup: a flooding peer
  // cannot starve the others.
  void on_peer_readable(Peer* p) {
    const size_t limit = p->offload ? kMaxFramePayload : opts.max_frame;
    const ssize_t n = read(p->fd, p->in.get() + p->in_len, p->in_cap - p->in_len);
    if (n == 0) return close_peer(p, "closed");
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      return close_peer(p, errno_text("read"));
    }
    p->rx_bytes.add(uint64_t(n));
    p->in_len += size_t(n);
    const uint8_t* buf = p->in.get();
    size_t off = 0;
    for (;;) {
      FrameHeader h;
      const FrameStatus s = next_frame(buf + off, p->in_len - off, limit, &h);
      if (s == FrameStatus::NeedMore) break;
      if (s == FrameStatus::Oversize) {
        RouterEvent e(RouterEvent::Type::ProtocolError);
        e.id = p->id;
        e.reason = "oversize";
        emit(std::move(e));
        return close_peer(p, "protocol_error");
      }
      p->rx.add(1);
      route_up(p, h, buf + off + kFrameHeaderSize);
      off += kFrameHeaderSize + h.size;
    }
    // Keep a partial frame at the front. in_cap >= max_frame + 4, so a frame
    // that passed the size check always fits.
    if (off > 0) {
      memmove(p->in.get(), buf + off, p->in_len - off);
      p->in_len -= off;
    }
  }

  void route_up(Peer* p, const FrameHeader& h, const uint8_t* payload) {
    if (h.mod1 != 0 || h.mod2 > kModVnet) return drop(p, Drop::BadModifier);
    // A peer's rule block would let a vassal set its own rules (a uWSGI
    // misbehaviour): refused. opts.accept_rule_blocks is reserved.
    if (h.mod2 == kModRuleBlock) return refuse(p, Drop::RuleBlock, p->addr);
    if (h.mod2 == kModHello) return on_hello(p, payload, h.size);
    const uint8_t* pkt = payload;
    size_t len = h.size;
    virtio_net_hdr vh;
    Drop why;
    if (h.mod2 == kModVnet) {
      if (!p->offload) return drop(p, Drop::NotNegotiated);
      if (!vnet_check(payload, h.size, &vh, &why)) return drop(p, why);
      pkt = payload + kVnetHdrLen;
      len = h.size - kVnetHdrLen;
    } else if (!ipv4_check(pkt, len, &why)) {
      return drop(p, why);
    }
    const uint32_t src = ipv4_src(pkt);
    if (p->addr == 0) {
      if (!learn(p, src, &why)) return refuse(p, why, src);
    } else if (src != p->addr) {
      return refuse(p, Drop::Spoof, src);
    }
    if (!rules->out.pass(pkt, len)) return drop(p, Drop::FirewallOut);
    if (!write_tun(payload, h.size, h.mod2 == kModVnet)) return drop(p, Drop::TunWrite);
    if (h.mod2 == kModVnet) {
      p->vnet_rx.add(1);
      if (vh.gso_type != VIRTIO_NET_HDR_GSO_NONE) p->gso_rx.add(1);
    }
    tun_tx.add(1);
    tun_tx_bytes.add(len);
    busy.moved();
  }

  // One packet to the tun: a vnet tun takes a header first (with_hdr: the
  // payload starts with the peer's; else a zero header goes in front).
  bool write_tun(const uint8_t* payload, size_t n, bool with_hdr) {
    if (!vnet || with_hdr) return write(tun, payload, n) == ssize_t(n);
    static const uint8_t zero[kVnetHdrLen] = {};
    struct iovec iov[2] = {{const_cast<uint8_t*>(zero), kVnetHdrLen}, {const_cast<uint8_t*>(payload), n}};
    return writev(tun, iov, 2) == ssize_t(kVnetHdrLen + n);
  }

  // A peer's offload hello (offload.h): never a source of its address.
  // With offloads on here, answered with ours; the peer may then send and
  // gets kModVnet frames. Off here: ignored (the peer stays plain).
  void on_hello(Peer* p, const uint8_t* payload, size_t len) {
    uint16_t peer_caps, peer_max;
    if (!hello_parse(payload, len, &peer_caps, &peer_max)) return drop(p, Drop::BadHello);
    if (!vnet) return;
    uint8_t hello[kHelloLen];
    const uint32_t src = gateway.empty() ? 0 : gateway[0];
    hello_build(hello, src, caps, uint16_t(kMaxFramePayload));
    if (!p->enqueue(hello, kHelloLen, kModHello)) return drop(p, Drop::QueueFull);
    {
      std::lock_guard<std::mutex> g(stats_mu);
      p->offload = true;
      p->caps = peer_caps & kCapAll;
    }
    want_out(p, true);  // sent when the socket is writable, before any kModVnet
  }

  // ---- addresses ------------------------------------------------------------

  // Takes src as p's address, or says why not. The holder of an address keeps
  // it (uWSGI let any peer take over another's address).
  bool learn(Peer* p, uint32_t src, Drop* why) {
    *why = refusal(p, src);
    if (*why != Drop::Count) return false;
    assign(p, src);
    return true;
  }

  // Drop::Count if p may take src. The tun's addresses are asked for only
  // when everything else agrees, so refusals cost no syscall (a refused
  // gateway address is answered from a cache at most a second old).
  Drop refusal(Peer* p, uint32_t src) {
    if (bad_source(src)) return Drop::BadSource;
    if (now - gateway_at < kSecond && is_gateway_cached(src)) return Drop::Gateway;
    if (by_addr.count(src)) return Drop::Collision;
    if (!may_use(p, src)) return Drop::Unbound;
    if (is_gateway(src)) return Drop::Gateway;
    return Drop::Count;
  }

  static bool matches(const Binding& b, const Peer* p) {
    if (b.uid < 0 && b.pid < 0) return false;  // a pure reservation
    return (b.uid < 0 || uint32_t(b.uid) == p->uid) && (b.pid < 0 || uint32_t(b.pid) == p->pid);
  }

  // The one address p is bound to, if any (a pid binding first, then its uid's).
  bool bound_address(const Peer* p, uint32_t* a) const {
    auto bp = bind_of_pid.find(p->pid);
    if (bp != bind_of_pid.end() && matches(bp->second, p)) {
      *a = bp->second.addr;
      return true;
    }
    auto bu = addr_of_uid.find(p->uid);
    if (bu == addr_of_uid.end()) return false;
    *a = bu->second;
    return true;
  }

  bool may_use(const Peer* p, uint32_t a) const {
    uint32_t bound;
    if (bound_address(p, &bound) && bound != a) return false;
    auto r = bindings_of_addr.find(a);
    if (r == bindings_of_addr.end()) return true;
    for (const Binding& b : r->second)
      if (matches(b, p)) return true;
    return false;
  }

  bool is_gateway_cached(uint32_t a) const {
    return std::find(gateway.begin(), gateway.end(), a) != gateway.end();
  }

  // Asks the kernel (a learn is rare; refusals hit the cache above).
  bool is_gateway(uint32_t a) {
    gateway = interface_addresses(opts.tun_name);
    gateway_at = mono_ns();
    return is_gateway_cached(a);
  }

  void assign(Peer* p, uint32_t a) {
    {
      std::lock_guard<std::mutex> g(stats_mu);  // stats() reads addr
      p->addr = a;
    }
    by_addr[a] = p;
    RouterEvent e(RouterEvent::Type::PeerAddr);
    e.id = p->id;
    e.addr = a;
    emit(std::move(e));
  }

  // A static binding gives the peer its address at once, if it is free.
  void try_bound_address(Peer* p) {
    uint32_t a;
    if (p->addr != 0 || !bound_address(p, &a)) return;
    if (bad_source(a) || by_addr.count(a) || !may_use(p, a) || is_gateway(a)) return;
    assign(p, a);
  }

  void set_bindings(const std::vector<Binding>& list) {
    bind_of_pid.clear();
    addr_of_uid.clear();
    bindings_of_addr.clear();
    for (const Binding& b : list) {
      if (b.pid >= 0) bind_of_pid[uint32_t(b.pid)] = b;
      else if (b.uid >= 0) addr_of_uid[uint32_t(b.uid)] = b.addr;
      bindings_of_addr[b.addr].push_back(b);
    }
  }

  // ---- peers ----------------------------------------------------------------

  void on_accept() {
    for (int k = 0; k < kAcceptBatch; k++) {
      const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        const int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED) return;
        return pause_accept(e);
      }
      set_sndbuf(fd, opts.sndbuf);
      if (accept_reported_at != 0) {
        accept_reported_at = 0;
        RouterEvent n(RouterEvent::Type::Notice);
        n.message = "accepting peers on " + opts.socket_path + " again";
        emit(std::move(n));
      }
      struct ucred cred;
      socklen_t clen = sizeof cred;
      if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
        emit_error(errno_text("SO_PEERCRED"));
        close(fd);
        continue;
      }
      std::unique_ptr<Peer> p(new Peer());
      p->id = next_id++;
      p->fd = fd;
      p->uid = cred.uid;
      p->gid = cred.gid;
      p->pid = uint32_t(cred.pid);
      p->in_cap = std::max<size_t>(size_t(vnet ? kMaxFramePayload : opts.max_frame) + kFrameHeaderSize, kPeerInMin);
      p->in.reset(new uint8_t[p->in_cap]);
      p->send_max = std::min<uint32_t>(opts.max_frame, uint32_t(kMaxFramePayload));
      p->out_cap = opts.queue_bytes;
      p->out.reset(new uint8_t[p->out_cap ? p->out_cap : 1]);
      struct epoll_event e;
      memset(&e, 0, sizeof e);
      e.events = EPOLLIN;
      e.data.ptr = p.get();
      if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
        emit_error(errno_text("epoll_ctl (peer)"));
        close(fd);
        continue;
      }
      Peer* raw = p.get();
      {
        std::lock_guard<std::mutex> g(stats_mu);
        peers.push_back(std::move(p));
      }
      RouterEvent up(RouterEvent::Type::PeerUp);
      up.id = raw->id;
      up.uid = raw->uid;
      up.gid = raw->gid;
      up.pid = raw->pid;
      emit(std::move(up));
      try_bound_address(raw);
    }
  }

  // accept4 failed with something waiting (EMFILE, ENFILE, ENOBUFS, ENOMEM):
  // stop watching the listen fd for kAcceptPause, keep serving the peers we
  // have. Reported on the first pause, then at most every kAcceptReportEvery.
  void pause_accept(int e) {
    listen_events(0);
    accept_resume_at = now + kAcceptPause;
    accept_pauses++;
    if (accept_reported_at != 0 && now - accept_reported_at < kAcceptReportEvery) return;
    std::string why = e == EMFILE || e == ENFILE ? "out of file descriptors" : "cannot accept peers";
    why += " (accept on " + opts.socket_path + ": " + strerror(e) + "): not accepting for " +
           std::to_string(kAcceptPause / 1000000) + " ms";
    if (accept_pauses > 1) why += "; still failing: " + std::to_string(accept_pauses) + " pauses since the last report";
    emit_error(why);
    accept_reported_at = now;
    accept_pauses = 0;
  }

  void resume_accept() {
    accept_resume_at = 0;
    listen_events(EPOLLIN);
  }

  void listen_events(uint32_t ev) {
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = ev;
    e.data.u64 = kTagListen;
    epoll_ctl(epfd, EPOLL_CTL_MOD, listen_fd, &e);
  }

  // epoll_wait's timeout: a second, or until accepting resumes.
  int wait_ms() const {
    if (!held.empty()) return 0;  // held frames: look once more, then write them
    if (accept_resume_at == 0) return 1000;
    const uint64_t t = mono_ns();
    if (t >= accept_resume_at) return 0;
    return int(std::min<uint64_t>((accept_resume_at - t) / 1000000 + 1, 1000));
  }

  void close_peer(Peer* p, const std::string& reason) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, p->fd, nullptr);
    close(p->fd);
    p->fd = -1;
    p->dead = true;
    p->held = false;
    held.erase(std::remove_if(held.begin(), held.end(), [p](const HeldRef& h) { return h.p == p; }), held.end());
    if (p->addr != 0) {
      auto it = by_addr.find(p->addr);
      if (it != by_addr.end() && it->second == p) by_addr.erase(it);
    }
    RouterEvent e(RouterEvent::Type::PeerDown);
    e.id = p->id;
    e.addr = p->addr;
    e.reason = reason;
    emit(std::move(e));
    std::lock_guard<std::mutex> g(stats_mu);
    for (size_t i = 0; i < peers.size(); i++) {
      if (peers[i].get() != p) continue;
      graveyard.push_back(std::move(peers[i]));
      peers[i] = std::move(peers.back());
      peers.pop_back();
      break;
    }
  }

  // ---- drops and events -------------------------------------------------------

  void drop(Peer* p, Drop why) {
    drops[int(why)].add(1);
    if (p) p->drops[int(why)].add(1);
  }

  // A drop that is reported: at most one event per peer per reason per second,
  // carrying the number of drops since the previous one.
  void refuse(Peer* p, Drop why, uint32_t addr) {
    drop(p, why);
    const int w = int(why);
    p->refused_count[w]++;
    p->refused_addr[w] = addr;
    if (now - p->refused_at[w] >= kSecond) {
      refused_event(p, why, addr);
    } else {
      refused_pending = true;
    }
  }

  void refused_event(Peer* p, Drop why, uint32_t addr) {
    const int w = int(why);
    RouterEvent e(RouterEvent::Type::Refused);
    e.id = p->id;
    e.reason = drop_name(why);
    e.addr = addr;
    e.count = p->refused_count[w];
    emit(std::move(e));
    p->refused_count[w] = 0;
    p->refused_at[w] = now;
  }

  // Reports refusals held back by the rate limit once their second is over.
  void sweep_refused() {
    last_sweep = now;
    if (!refused_pending) return;
    refused_pending = false;
    for (auto& p : peers) {
      for (int w = 0; w < kDropCount; w++) {
        if (p->refused_count[w] == 0) continue;
        if (now - p->refused_at[w] >= kSecond) {
          refused_event(p.get(), Drop(w), p->refused_addr[w]);
        } else {
          refused_pending = true;
        }
      }
    }
  }

  void emit(RouterEvent&& e) {
    std::lock_guard<std::mutex> g(ev_mu);
    if (events.size() >= kMaxPendingEvents) return;
    events.push_back(std::move(e));
    new_events = true;
  }

  void emit_error(const std::string& message) {
    RouterEvent e(RouterEvent::Type::Error);
    e.message = message;
    emit(std::move(e));
  }

  // Once per wakeup: tell the binding there are events (once until taken).
  void publish() {
    if (!new_events) return;
    new_events = false;
    if (wake && !wake_pending.exchange(true)) wake();
  }

  // ---- control ----------------------------------------------------------------

  // Returns true when asked to stop. Rules and bindings change here, between
  // two batches, so no packet is judged by a mix of old and new.
  bool on_control() {
    uint64_t v;
    if (read(control, &v, sizeof v) < 0 && errno != EAGAIN) emit_error(errno_text("eventfd read"));
    if (pending->stop.load()) return true;
    std::unique_ptr<RuleSet> rs;
    bool have_bindings = false;
    std::vector<Binding> b;
    {
      std::lock_guard<std::mutex> g(pending->mu);
      if (pending->relisten) {
        pending->relisten = false;
        pending->relisten_err.clear();
        pending->relisten_ok = relisten(&pending->relisten_err);
        pending->relisten_done = true;
        pending->relisten_cv.notify_all();
      }
      rs = std::move(pending->rules);
      have_bindings = pending->have_bindings;
      pending->have_bindings = false;
      b.swap(pending->bindings);
    }
    if (rs) install_rules(std::move(rs));
    if (have_bindings) {
      // New bindings govern learning from now on; peers keep addresses they
      // hold. Unlearned peers whose uid or pid is now bound get their address.
      set_bindings(b);
      for (auto& p : peers) try_bound_address(p.get());
    }
    return false;
  }

  void install_rules(std::unique_ptr<RuleSet> rs) {
    rs->in.inherit(rules->in, rs->carry_in);
    rs->out.inherit(rules->out, rs->carry_out);
    {
      std::lock_guard<std::mutex> g(stats_mu);
      rules.swap(rs);
    }
    // rs (the old set) is freed here, outside the lock.
  }
};

// ---- Router: the controlling side -----------------------------------------------

Router::Router(RouterOptions opts)
    : opts_(std::move(opts)), loop_(new Loop(opts_)), pending_(new Pending()) {
  loop_->pending = pending_.get();
}

Router::~Router() { stop(); }

bool Router::start(std::function<void()> wake, std::string* err) {
  if (running_) {
    *err = "router already running";
    return false;
  }
  control_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (control_fd_ < 0) {
    *err = errno_text("eventfd");
    return false;
  }
  pending_->stop.store(false);
  loop_->control = control_fd_;
  loop_->wake = std::move(wake);

  struct Init {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    bool ok = false;
    std::string err;
  } init;
  Loop* loop = loop_.get();
  thread_ = std::thread([loop, &init] {
    std::string e;
    const bool ok = loop->init(&e);
    if (!ok) loop->teardown();
    {
      // Notify under the lock: start() may return (and destroy init) as soon
      // as it sees done.
      std::lock_guard<std::mutex> g(init.mu);
      init.done = true;
      init.ok = ok;
      init.err = e;
      init.cv.notify_one();
    }
    if (!ok) return;
    loop->run();
    loop->teardown();
  });
  bool ok;
  {
    std::unique_lock<std::mutex> g(init.mu);
    init.cv.wait(g, [&] { return init.done; });
    ok = init.ok;
    if (!ok) *err = init.err;
  }
  if (!ok) {
    thread_.join();
    close(control_fd_);
    control_fd_ = -1;
    loop_->wake = nullptr;
    return false;
  }
  running_ = true;
  return true;
}

void Router::notify() {
  const uint64_t one = 1;
  if (control_fd_ >= 0) (void)!write(control_fd_, &one, sizeof one);
}

void Router::stop() {
  if (!running_) return;
  pending_->stop.store(true);
  notify();
  thread_.join();
  close(control_fd_);
  control_fd_ = -1;
  loop_->wake = nullptr;
  running_ = false;
}

void Router::set_rules(std::vector<Rule> in, std::vector<Rule> out,
                       std::vector<int32_t> carry_in, std::vector<int32_t> carry_out) {
  // Compiled here, in the caller's thread; the loop only swaps pointers.
  std::unique_ptr<RuleSet> rs(new RuleSet(std::move(in), std::move(out)));
  rs->carry_in = std::move(carry_in);
  rs->carry_out = std::move(carry_out);
  if (!running_) {
    loop_->install_rules(std::move(rs));
    return;
  }
  {
    std::lock_guard<std::mutex> g(pending_->mu);
    if (pending_->rules) {
      // The loop has not taken the previous set yet: the caller's carry
      // indices refer to that set, so route them through its own carry.
      auto compose = [](std::vector<int32_t>& c, const std::vector<int32_t>& prev) {
        for (int32_t& x : c) x = (x >= 0 && size_t(x) < prev.size()) ? prev[x] : -1;
      };
      compose(rs->carry_in, pending_->rules->carry_in);
      compose(rs->carry_out, pending_->rules->carry_out);
    }
    pending_->rules = std::move(rs);
  }
  notify();
}

void Router::set_bindings(std::vector<Binding> bindings) {
  if (!running_) {
    loop_->set_bindings(bindings);
    return;
  }
  {
    std::lock_guard<std::mutex> g(pending_->mu);
    pending_->bindings = std::move(bindings);
    pending_->have_bindings = true;
  }
  notify();
}

bool Router::relisten(std::string* err) {
  if (!running_) {
    *err = "router is not running";
    return false;
  }
  std::unique_lock<std::mutex> g(pending_->mu);
  pending_->relisten = true;
  pending_->relisten_done = false;
  notify();
  if (!pending_->relisten_cv.wait_for(g, std::chrono::seconds(5), [&] { return pending_->relisten_done; })) {
    pending_->relisten = false;
    *err = "the router loop did not answer within 5 s";
    return false;
  }
  if (!pending_->relisten_ok) *err = pending_->relisten_err;
  return pending_->relisten_ok;
}

std::vector<RouterEvent> Router::take_events() {
  loop_->wake_pending.store(false);
  std::vector<RouterEvent> out;
  std::lock_guard<std::mutex> g(loop_->ev_mu);
  out.swap(loop_->events);
  return out;
}

RouterStats Router::stats() const {
  const Loop& l = *loop_;
  RouterStats s;
  std::lock_guard<std::mutex> g(l.stats_mu);
  s.rx_packets = l.tun_rx.get();
  s.rx_bytes = l.tun_rx_bytes.get();
  s.tx_packets = l.tun_tx.get();
  s.tx_bytes = l.tun_tx_bytes.get();
  s.fragmented = l.fragmented.get();
  s.frag_needed = l.frag_needed.get();
  s.gso_split = l.split_packets.get();
  s.gso_segments = l.split_segments.get();
  s.uso_tx = l.uso_frames.get();
  s.uso_segments = l.uso_segments.get();
  s.held_frames = l.held_frames.get();
  s.held_writes = l.held_writes.get();
  s.busy_polls = l.busy.polls();
  s.busy_poll_caught = l.busy.caught();
  s.busy_poll_ns = l.busy.poll_ns();
  for (int i = 0; i < kDropCount; i++) s.drops[i] = l.drops[i].get();
  s.peers.reserve(l.peers.size());
  for (const auto& p : l.peers) {
    PeerStats ps;
    ps.id = p->id;
    ps.addr = p->addr;  // written under stats_mu (assign)
    ps.uid = p->uid;
    ps.gid = p->gid;
    ps.pid = p->pid;
    ps.tx = p->tx.get();
    ps.rx = p->rx.get();
    ps.tx_bytes = p->tx_bytes.get();
    ps.rx_bytes = p->rx_bytes.get();
    ps.dropped = 0;
    for (int i = 0; i < kDropCount; i++) {
      ps.drops[i] = p->drops[i].get();
      ps.dropped += ps.drops[i];
    }
    ps.queued = p->queued.get();
    ps.offload = p->offload;  // written under stats_mu (on_hello)
    ps.vnet_rx = p->vnet_rx.get();
    ps.gso_rx = p->gso_rx.get();
    ps.vnet_tx = p->vnet_tx.get();
    ps.gso_tx = p->gso_tx.get();
    ps.uso_tx = p->uso_tx.get();
    s.peers.push_back(ps);
  }
  const RuleSet& r = *l.rules;
  for (size_t i = 0; i < r.in.size; i++) s.hits_in.push_back(r.in.hits[i].get());
  for (size_t i = 0; i < r.out.size; i++) s.hits_out.push_back(r.out.hits[i].get());
  return s;
}

}  // namespace moat
