// router.cc: the router's loop thread (see router.h for its job, limits and
// syscalls). Read top-down: setup (netns, tun, socket), the loop, the two
// directions (route_down: tun -> peer, route_up: peer -> tun), address
// learning, peers coming and going, events, what the controlling side hands
// over (rules, bindings, limits, relisten), stats. Rate limits: the
// shapers are limiter.h's; this file queues and releases through them. What a peer's frames do once
// handed over (queue, holding, writes) is peer.h's; who may use which
// address is addresses.h's; the rule chains are chain.h's; the socket file
// is listen_socket.h's; starting, stopping and the hand-over are
// router_control.cc's, through router_loop.h.
#include "router.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <unordered_map>

#include "addresses.h"
#include "busy_poll.h"
#include "chain.h"
#include "coalesce.h"
#include "conntrack.h"
#include "fd_closer.h"
#include "frame.h"
#include "handoff.h"
#include "listen_socket.h"
#include "mono_clock.h"
#include "offload.h"
#include "peer.h"
#include "peer_identity.h"
#include "peer_rules.h"
#include "reject.h"
#include "router_loop.h"
#include "sndbuf.h"
#include "sched_slice.h"
#include "tun_batch.h"
#include "tun.h"

namespace moat {
namespace {

constexpr size_t kTunBatch = 64;            // packets read from the tun per wakeup
constexpr size_t kTunBufSize = 65536 + 16;  // one IPv4 packet at most, with a virtio_net_hdr
constexpr size_t kArenaSize = 512 * 1024;   // one batch of frames read from the tun
constexpr size_t kPeerInMin = 65536;        // a peer's input buffer, at least
constexpr size_t kSharedRead = 16384;       // a read while other peers wait in the same wakeup
constexpr uint32_t kPeerTunReads = 64;      // reads from a handed-over peer's tun per wakeup (<= kTunBatch)
constexpr uint32_t kPeerTunShared = 8;      // the same while other peers wait in the same wakeup
constexpr int kEpollEvents = 64;
constexpr int kAcceptBatch = 16;
constexpr size_t kMaxPendingEvents = 65536; // beyond: events are dropped (JS not draining)
constexpr uint64_t kSecond = 1000000000ull;
constexpr uint32_t kIcmpPerSecond = 100;    // fragmentation-needed answers
constexpr uint32_t kRejectPerSecond = 100;  // answers to rejected packets (reject.h)
constexpr size_t kConntrackSweep = 1024;    // conntrack slots looked at per wakeup
constexpr uint64_t kAcceptPause = 200000000ull;      // accept failing (out of fds): retry after 200 ms
// Merge runs of same-flow UDP datagrams for offload peers (coalesce.h); the
// IPv4 super-packet stays within the tuns' gso_max_size.
constexpr bool kUsoCoalesce = true;
constexpr size_t kUsoMaxPacket = kTunGsoMaxSize;
constexpr uint64_t kAcceptReportEvery = 10 * kSecond; // while it keeps failing, one event per 10 s

// epoll tags of the fixed fds; peers are tagged with their Peer*, never this small.
constexpr uint64_t kTagListen = 2, kTagControl = 3;
// The tun's queues: kTagTunQueue + 2 * index (even, below any pointer).
constexpr uint64_t kTagTunQueue = 16;
constexpr uint32_t kMaxTunQueues = 64;
constexpr bool is_tun_tag(uint64_t tag) { return tag >= kTagTunQueue && tag < kTagTunQueue + 2 * kMaxTunQueues && !(tag & 1); }
constexpr bool is_peer_tag(uint64_t tag) { return tag >= kTagTunQueue + 2 * kMaxTunQueues; }
// A handed-off peer's tun: the Peer's pointer (8-byte aligned) with bit 0 set.
constexpr uint64_t kTagPeerTun = 1;

std::string errno_text(const std::string& what, int e = errno) {
  return what + ": " + strerror(e);
}

// The loop thread's state and code; Router (router_control.cc) drives it
// through Router::Loop (router_loop.h).
struct RouterLoop final : Router::Loop {
  const RouterOptions& opts;
  std::function<void()> wake;
  Router::Pending* pending;
  int control = -1;

  int tun = -1, epfd = -1;  // tun: its first queue, which also takes the writes
  // The tun's queues toward the router (RouterOptions::tun_queues), each
  // with its reads-per-call count (TunBatch's policy) and whether epoll
  // said it has packets this wakeup.
  struct TunQueue {
    int fd = -1;
    unsigned next = 1;
    bool ready = false;
    size_t tried = 0, found = 0;  // reads and packets this wakeup
  };
  std::vector<TunQueue> tunq;
  bool tun_gone = false;  // tun_lost() ran
  std::atomic<uint32_t> queues_open{0};  // for stats(): set once by open_tun
  std::atomic<bool> steered{false};
  ListenSocket listener;  // peers connect here

  // Shared with stats(): the structure (peer list, rule set) changes under
  // stats_mu; counters are single-writer relaxed atomics.
  mutable std::mutex stats_mu;
  std::vector<std::unique_ptr<Peer>> peers;
  std::unique_ptr<RuleSet> rules;
  std::unique_ptr<PeerRuleTable> peer_rules;  // each peer's own rules (peer_rules.h)
  Counter tun_rx, tun_rx_bytes, tun_tx, tun_tx_bytes;
  Counter tun_read_calls;  // system calls that read the tun (read() or io_uring_enter)
  Counter fragmented, frag_needed;  // packets split for a peer; ICMP answers sent
  Counter split_packets, split_segments;  // super-packets split for a plain peer; segments made
  Counter drops[kDropCount];

  // Events for JS.
  std::mutex ev_mu;
  std::vector<RouterEvent> events;
  std::atomic<bool> wake_pending{false};
  bool new_events = false;

  // Loop thread only.
  AddressBook addrs;       // who holds and who may take which address
  std::vector<Peer*> dirty;
  HoldList holds;          // peers whose frames wait for later ones (peer.h)
  // Small packets are read from the tun many per system call (tun_batch.h)
  // and copied into the arena; big ones (offload super-packets, where the
  // copy would cost more than the call) are read in place with read().
  TunBatch tun_batch;
  SndbufGrowth sndbufs;    // send buffers of peers that stream (sndbuf.h)
  uint64_t last_sndbuf_check = 0;
  bool backlog = false;    // the last tun batch ended with packets still queued
  BusyPoll busy;  // polling after traffic (busy_poll.h)
  KeepWarm warm;  // short sleeps for a while after traffic (busy_poll.h)
  LoadSlice slice;  // a short scheduler slice while busy (sched_slice.h)
  std::vector<std::unique_ptr<Peer>> graveyard;  // closed this wakeup, freed at its end
  FdCloser closer;  // fds received from peers (tuns): a last tun reference closes in ~36 ms
  // A packet queued for a handed-off peer's tun (flush_tun), counted once
  // sent; a held one (write_held_tun) was counted when it was queued.
  struct TunWrite {
    Peer* p;
    uint32_t segs, bytes, ip_packets, ip_bytes;
    bool counted;
  };
  std::vector<TunWrite> tun_writes;  // index = the write's in tun_batch
  bool flushing_batch = false;       // in flush_batch: tun writes wait for its end
  // The down batch: frames built in place in the arena; slots chain each
  // peer's frames in order (Peer::batch_head/tail index them).
  std::unique_ptr<uint8_t[]> arena{new uint8_t[kArenaSize]};
  size_t arena_len = 0;
  std::vector<BatchSlot> slots;
  std::unique_ptr<uint8_t[]> fragbuf{new uint8_t[kMaxFramePayload]};
  std::unique_ptr<uint8_t[]> fragsrc{new uint8_t[kTunBufSize]};
  // Offloads (opts.offload): the tun carries a virtio_net_hdr before every
  // packet; super-packets for plain peers are copied to gsosrc and split
  // into segbuf. caps: what our tun takes (sent in our hello).
  bool vnet = false;
  uint16_t caps = 0;
  std::unique_ptr<uint8_t[]> gsosrc, segbuf;
  // One hop (opts.handoff): one packet read from a peer's tun; the open run
  // of same-flow datagrams read from it (coalesce.h), built in up_buf and
  // written to our tun as one super-packet: up_segs, up_cost its packets
  // and wire bytes (packet_cost), for up_peer's accounting. Open only
  // within on_peer_tun (coalescing_up).
  std::unique_ptr<uint8_t[]> peer_tun_buf, up_buf;
  UsoRun up_run;
  Peer* up_peer = nullptr;
  uint32_t up_segs = 0;
  size_t up_cost = 0;
  bool coalescing_up = false;
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
  // Connection tracking (conntrack.h): a table only while the rule set
  // names a state. Answers to rejected packets: at most kRejectPerSecond.
  std::unique_ptr<Conntrack> ct;
  int readable_peers = 0;  // peers with input in this wakeup (on_peer_readable)
  Counter ct_entries, ct_capacity, rejects, rejects_limited;
  uint64_t reject_window = 0;
  uint32_t reject_budget = 0;
  uint64_t now = 0;
  uint64_t last_sweep = 0;
  // Accepting paused (accept4 failed: out of fds, out of memory): the listen
  // fd is level-triggered, so without a pause the loop would spin. 0: not paused.
  uint64_t accept_resume_at = 0;
  uint64_t accept_reported_at = 0;  // the last pause reported (0: none since accepting worked)
  uint64_t accept_pauses = 0;       // pauses since then
  bool refused_pending = false;
  uint32_t next_id = 1;
  // Rate limits (set_limits): by address, and the default (addr 0) for the
  // others. shaping: peers with packets waiting in a shaper; shape_due:
  // when the first of them may leave (0: none waits).
  std::unordered_map<uint32_t, PeerLimit> limit_by_addr;
  PeerLimit default_limit;
  std::vector<Peer*> shaping;
  uint64_t shape_due = 0;
  bool releasing = false;  // release_shaped() walks shaping

  RouterLoop(const RouterOptions& o, Router::Pending* p)
      : opts(o), pending(p), rules(new RuleSet({}, {})), peer_rules(new PeerRuleTable()), addrs(o.tun_name), holds(uint64_t(o.hold_us) * 1000) {
    addrs.set_bindings(o.bindings);
    dirty.reserve(256);
    slots.reserve(1024);
  }

  // ---- setup and teardown -------------------------------------------------

  void attach(int control_fd, std::function<void()> w) override {
    control = control_fd;
    wake = std::move(w);
  }

  bool init(std::string* err) override {
    busy.configure(opts.busy_poll_us);
    sndbufs.configure(opts.sndbuf_busy, opts.sndbuf_budget);
    slice.init();  // init runs on the loop thread, whose slice it is
    if (!enter_netns(opts.netns, err)) return false;
    vnet = opts.offload;
    if (!open_tun(err)) return false;
    if (vnet) {
      // TSO6 is not asked for: IPv6 is not routed. USO needs both USO flags.
      const int f = tun_set_offload(tun, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_USO4 | TUN_F_USO6, err);
      if (f < 0) return false;
      caps = kCapCsum | kCapTso4 | ((f & TUN_F_USO4) ? kCapUso4 : 0);
      gsosrc.reset(new uint8_t[kTunBufSize]);
      segbuf.reset(new uint8_t[kTunBufSize]);
      if (opts.handoff) {
        peer_tun_buf.reset(new uint8_t[kTunBufSize]);
        up_buf.reset(new uint8_t[kTunBufSize]);
      }
    }
    tun_batch.init(tun, kTunBatch, kTunBufSize);  // failing: read() only
    if (!open_socket(&listener, err)) return false;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
      *err = errno_text("epoll_create1");
      return false;
    }
    for (size_t q = 0; q < tunq.size(); q++)
      if (!watch(tunq[q].fd, kTagTunQueue + 2 * q, EPOLLIN)) {
        *err = errno_text("epoll_ctl");
        return false;
      }
    if (!watch(listener.fd, kTagListen, EPOLLIN) || !watch(control, kTagControl, EPOLLIN)) {
      *err = errno_text("epoll_ctl");
      return false;
    }
    return true;
  }

  // The tun with its queues; with more than one, steered by destination
  // (tun.h). What falls short of the options is a notice, not a failure:
  // one queue is how the router always worked.
  bool open_tun(std::string* err) {
    std::vector<int> fds;
    std::string note;
    const unsigned want = std::clamp<uint32_t>(opts.tun_queues, 1, kMaxTunQueues);
    if (!tun_open_queues(opts.tun_name, vnet, kTunGsoMaxSize, want, &fds, &note, err)) return false;
    if (!note.empty()) emit_notice(note);
    std::string why;
    if (fds.size() > 1 && !tun_steer_by_destination(fds[0], &why))
      emit_notice("tun device " + opts.tun_name + ": " + why + "; its " + std::to_string(fds.size()) +
                  " queues are steered by flow hash instead, which may put two vassals' traffic in one queue");
    else if (fds.size() > 1) steered.store(true, std::memory_order_relaxed);
    for (int fd : fds) tunq.push_back(TunQueue{fd});
    tun = fds[0];
    queues_open.store(uint32_t(fds.size()), std::memory_order_relaxed);
    return true;
  }

  bool watch(int fd, uint64_t tag, uint32_t ev) {
    struct epoll_event e;
    memset(&e, 0, sizeof e);
    e.events = ev;
    e.data.u64 = tag;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) == 0;
  }

  // Closes everything; the socket file goes only if it is still the one we made.
  void teardown() override {
    {
      std::lock_guard<std::mutex> g(stats_mu);
      for (auto& p : peers) {
        if (p->fd >= 0) close(p->fd);
        closer.close_later(p->tun_fd);
        closer.close_later(p->pending_fd);
      }
      peers.clear();
    }
    addrs.clear();
    dirty.clear();
    graveyard.clear();
    listener.close();
    for (TunQueue& q : tunq) close(q.fd);
    tunq.clear();
    tun = -1;
    if (epfd >= 0) close(epfd);
    epfd = -1;
  }

  // The socket file (or its directory) was removed under us: new peers cannot
  // reach the old socket by name, connected peers are unaffected. Binds a new
  // listening socket at the same path and swaps it in; on failure the old one
  // stays. A path still naming our socket needs nothing.
  bool relisten(std::string* err) {
    if (listener.current()) return true;
    listener.disown();  // whatever happens, the old file is not ours to remove
    ListenSocket fresh;
    bool ok = open_socket(&fresh, err);
    if (ok && !watch(fresh.fd, kTagListen, accept_resume_at != 0 ? 0u : uint32_t(EPOLLIN))) {
      *err = errno_text("epoll_ctl (listen)");
      ok = false;
    }
    if (!ok) {
      fresh.close();
      return false;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, listener.fd, nullptr);
    listener.close();
    listener = fresh;
    return true;
  }

  bool open_socket(ListenSocket* s, std::string* err) {
    return s->open(opts.socket_path, opts.socket_mode, opts.socket_uid, opts.socket_gid, err);
  }

  // ---- the loop -----------------------------------------------------------

  void run() override {
    struct epoll_event evs[kEpollEvents];
    bool stopping = false;
    while (!stopping) {
      const int n = busy_epoll_wait(busy, epfd, evs, kEpollEvents, wait_ms(), &warm);
      if (n < 0) {
        if (errno == EINTR) continue;
        emit_error(errno_text("epoll_wait"));
        publish();
        return;
      }
      now = mono_ns();
      slice.tick(now);
      // Control first: a rule change made before a packet was sent judges it.
      for (int i = 0; i < n; i++)
        if (evs[i].data.u64 == kTagControl) stopping = on_control();
      // Shaped packets whose tokens came leave before newer ones arrive.
      if (shape_due != 0 && now >= shape_due) release_shaped();
      bool tun_event = false;
      // Several peers with input in one wakeup: each reads a smaller share,
      // so one that sends a little (a ping beside floods) waits for a
      // shorter round of the others (on_peer_readable).
      readable_peers = 0;
      uint32_t tun_events = 0;
      for (int i = 0; i < n; i++) {
        const uint64_t tag = evs[i].data.u64;
        if (is_peer_tag(tag) && (evs[i].events & EPOLLIN)) readable_peers++;
        if (is_tun_tag(tag)) {
          tunq[(tag - kTagTunQueue) / 2].ready = true;
          tun_events |= evs[i].events;
        }
      }
      for (int i = 0; i < n; i++) {
        const uint64_t tag = evs[i].data.u64;
        if (tag == kTagControl) {
          continue;
        } else if (is_tun_tag(tag)) {
          // All ready queues at the first one's event: one batch, one flush.
          if (!tun_event) on_tun(tun_events);
          tun_event = true;
        } else if (tag == kTagListen) {
          on_accept();
        } else if (tag & kTagPeerTun) {
          Peer* p = reinterpret_cast<Peer*>(uintptr_t(tag & ~kTagPeerTun));
          if (!p->dead) on_peer_tun(p, evs[i].events);
        } else {
          Peer* p = static_cast<Peer*>(evs[i].data.ptr);
          if (!p->dead && (evs[i].events & EPOLLOUT)) {
            drained(p);
            flush(p);
          }
          if (!p->dead && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) on_peer_readable(p);
        }
      }
      // Held frames and a tun with nothing to read (level-triggered: no
      // event): the backlog is gone, write those held for drain_ns.
      if (!holds.empty() && !tun_event) release_held(true);
      if (accept_resume_at != 0 && now >= accept_resume_at) resume_accept();
      if (now - last_sweep >= kSecond) sweep_refused();
      if (sndbufs.peers() != 0 && now - last_sndbuf_check >= kSecond) shrink_idle_sndbufs();
      if (ct) {
        ct->sweep(now, kConntrackSweep);
        ct_entries.set(ct->size());
      }
      graveyard.clear();
      publish();
    }
  }

  // ---- down: tun -> peers -------------------------------------------------

  // Every queue epoll found ready, each read up to an equal share of the
  // batch: a queue flooded toward one vassal cannot keep the packets in
  // the others waiting behind it (docs/multiqueue.md). One flush for all.
  void on_tun(uint32_t ev) {
    if (ev & (EPOLLERR | EPOLLHUP)) return tun_lost("tun device " + opts.tun_name + " failed (deleted?)");
    arena_len = 0;
    backlog = true;  // for flushes while reading: the batch is not over
    size_t packets = 0, bytes = 0;
    unsigned ready = 0;
    for (TunQueue& q : tunq) {
      ready += q.ready ? 1 : 0;
      q.tried = q.found = 0;
    }
    const size_t share = std::max<size_t>(1, kTunBatch / std::max(1u, ready));
    bool left = tun_batch.wanted() && on_tun_batched(share, &packets, &bytes);
    // Super-packets, or batched reads that failed: the queues still ready.
    for (TunQueue& q : tunq) {
      if (!q.ready) continue;
      q.ready = false;
      if (!tun_gone) left |= on_tun_in_place(q.fd, share - q.tried, &packets, &bytes);
    }
    backlog = left && !tun_gone;
    tun_batch.after_wakeup(packets, bytes);  // super-packets: in place next time
    flush_batch();
    now = mono_ns();
    release_held(!backlog);
  }

  // Packets are read straight into the batch arena, 4 bytes after the
  // write position, so each frame (header + packet) is built in place and
  // sent from there: no copy into a peer's queue unless a send falls short.
  // true if the queue may hold more (it gave `limit` packets).
  bool on_tun_in_place(int fd, size_t limit, size_t* packets, size_t* bytes) {
    for (size_t k = 0; k < limit && arena_len + kFrameHeaderSize + kTunBufSize <= kArenaSize; k++) {
      uint8_t* buf = arena.get() + arena_len + kFrameHeaderSize;
      tun_read_calls.add(1);
      const ssize_t n = read(fd, buf, kTunBufSize);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) tun_lost(errno_text("read from tun device " + opts.tun_name));
        return false;
      }
      if (n == 0) return false;
      (*packets)++;
      *bytes += size_t(n);
      route_tun_packet(buf, size_t(n));
    }
    return true;
  }

  // With many peers a packet's peer is cold (docs/scale.md): the first
  // lines of each peer a call's packets go to are asked for before any is
  // routed, so their cache misses overlap instead of each packet waiting
  // for its own. A hint only: routing looks each peer up again.
  void prefetch_peers(unsigned n) {
    const size_t ip = vnet ? kVnetHdrLen : 0;
    for (unsigned i = 0; i < n; i++) {
      const int r = tun_batch.result(i);
      if (r < int(ip) + 20) continue;  // no IPv4 header to read an address from
      const Peer* p = addrs.holder(ipv4_dst(tun_batch.slot(i) + ip));
      if (!p) continue;
      const char* line = reinterpret_cast<const char*>(p);
      __builtin_prefetch(line);
      __builtin_prefetch(line + 64);
      __builtin_prefetch(line + 128, 1);
    }
  }

  // Reads in batches, each call reading every ready queue (the policy is
  // TunBatch's, kept per queue, within its share), each packet copied to
  // where on_tun_in_place would have read it. A queue is done once a read
  // found it empty or its share is read (true then: it may hold more); one
  // that io_uring failed to read stays ready for on_tun_in_place.
  bool on_tun_batched(size_t share, size_t* packets, size_t* bytes) {
    int fds[kTunBatch];
    uint8_t owner[kTunBatch];  // the queue of each read
    static_assert(kMaxTunQueues <= 256, "a queue index fits owner[]");
    bool left = false;
    for (;;) {
      unsigned n = 0;
      for (size_t qi = 0; qi < tunq.size(); qi++) {
        const TunQueue& q = tunq[qi];
        if (!q.ready) continue;
        const size_t k = std::min<size_t>(q.next, share - q.tried);
        for (size_t j = 0; j < k && n < kTunBatch; j++, n++) {
          fds[n] = q.fd;
          owner[n] = uint8_t(qi);
        }
      }
      if (n == 0) return left;
      tun_read_calls.add(1);
      if (tun_batch.read_each(fds, -1, n) != n) {  // io_uring failed: read() from here on
        emit_notice("tun device " + opts.tun_name + ": batched reads (io_uring) failed, reading one packet a call from now on");
        return left;
      }
      prefetch_peers(n);
      for (unsigned i = 0; i < n;) {
        TunQueue& q = tunq[owner[i]];
        const unsigned first = i;
        bool drained = false;
        for (; i < n && owner[i] == owner[first]; i++) {
          const int r = tun_batch.result(i);
          if (TunBatch::empty(r)) {
            drained = true;
            continue;
          }
          if (r < 0) {
            tun_lost(errno_text("read from tun device " + opts.tun_name, -r));
            return false;
          }
          if (arena_len + kFrameHeaderSize + size_t(r) > kArenaSize) flush_batch();
          uint8_t* buf = arena.get() + arena_len + kFrameHeaderSize;
          memcpy(buf, tun_batch.slot(i), size_t(r));
          (*packets)++;
          *bytes += size_t(r);
          q.found++;
          route_tun_packet(buf, size_t(r));
        }
        const unsigned tried = i - first;
        q.tried += tried;
        q.next = TunBatch::next_after(q.next, drained, q.found, tun_batch.slots());
        // A small call whose every read found a packet: epoll
        // (level-triggered) says at once if more wait, so a lone packet (a
        // ping's answer) costs one call, not a second that finds nothing
        // (as read_peer_tun does). No backlog is known: its frames are not held.
        if (drained) {
          q.ready = false;
        } else if (q.tried >= share) {
          q.ready = false;
          left = true;
        } else if (tried < 4) {
          q.ready = false;
        }
      }
    }
  }

  void route_tun_packet(uint8_t* buf, size_t n) {
    tun_rx.add(1);
    tun_rx_bytes.add(uint64_t(n));
    busy.moved();
    slice.moved();
    if (vnet) route_down_vnet(buf, n);
    else route_down(buf, n);
  }

  // The device is gone (`ip link del` under us: poll says EPOLLERR, read
  // EBADFD): nothing can be routed any more. Reported once as fatal (TS stops
  // the router); the tun is no longer watched, so the loop does not spin.
  void tun_lost(const std::string& why) {
    if (tun_gone) return;  // once, whichever queue found it
    tun_gone = true;
    for (const TunQueue& q : tunq) epoll_ctl(epfd, EPOLL_CTL_DEL, q.fd, nullptr);
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
    Peer* p = addrs.holder(ipv4_dst(pkt));
    if (ct) return judge_down_tracked(p, pkt, len);
    if (!rules->in.pass(pkt, len)) return drop(p, Drop::FirewallIn), nullptr;
    if (!p) return drop(nullptr, Drop::NoPeer), nullptr;
    if (!peer_rules->pass_in(p->addr, pkt, len)) return drop(p, Drop::VassalFirewallIn), nullptr;
    return p;
  }

  // judge_down with flows tracked: the in chain sees the packet's state; an
  // accepted packet for a peer opens or updates its flow (the peer's quota).
  Peer* judge_down_tracked(Peer* p, const uint8_t* pkt, size_t len) {
    const CtLookup l = ct->lookup(pkt, len, now);
    const Verdict v = rules->in.judge(pkt, len, l.state);
    if (v != Verdict::Allow) {
      if (v == Verdict::Reject) reject(nullptr, pkt, len);
      return drop(p, Drop::FirewallIn), nullptr;
    }
    if (!p) return drop(nullptr, Drop::NoPeer), nullptr;
    if (!peer_rules->pass_in(p->addr, pkt, len)) return drop(p, Drop::VassalFirewallIn), nullptr;
    if (!track(p, l, p->addr)) return nullptr;
    return p;
  }

  // Records an accepted packet's flow for vassal's quota; false: a new flow
  // over a quota, dropped and counted.
  bool track(Peer* p, const CtLookup& l, uint32_t vassal) {
    const CtRefusal r = ct->commit(l, vassal, now);
    if (r == CtRefusal::None) return true;
    drop(p, r == CtRefusal::Full ? Drop::ConntrackFull : Drop::ConntrackVassal);
    return false;
  }

  // A rejected packet's answer (reject.h), toward where it came from: to
  // peer from (a frame, queued), or to the tun (from == null). Limited to
  // kRejectPerSecond; beyond, only counted.
  void reject(Peer* from, const uint8_t* pkt, size_t len) {
    if (now - reject_window >= kSecond) {
      reject_window = now;
      reject_budget = kRejectPerSecond;
    }
    if (reject_budget == 0) return rejects_limited.add(1);
    uint8_t answer[kRejectMax];
    const size_t n = reject_answer(pkt, len, answer, sizeof answer);
    if (n == 0) return;
    reject_budget--;
    if (from) {
      if (!from->enqueue(answer, n, kModPacket)) return drop(from, Drop::QueueFull);
      want_out(from, true);
    } else if (!write_tun(answer, n, false)) {
      return drop(nullptr, Drop::TunWrite);
    }
    rejects.add(1);
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
      const int payload = uso_ok(p) ? uso_payload(h, pkt, len) : -1;
      p->mergeable = payload > 0;
      if (run_peer == p && uso_fits(uso, pkt, len, payload, kUsoMaxPacket) &&
          (run_slot >= 0 ? kFrameHeaderSize + uso.len + size_t(payload) <= p->out_cap
                         : p->room_behind(size_t(payload)))) {
        // Same flow as the run just before it: its payload joins the run
        // (which ends where this packet was read, or at the queue's end).
        // A run in the arena stays within p's queue: a short write copies
        // the rest of it there.
        uso_append(&uso, pkt, len);
        if (run_slot >= 0) {
          arena_len += size_t(payload);
          slots[run_slot].segs++;
          slots[run_slot].ip_packets++;
          slots[run_slot].ip_bytes += uint32_t(len);
        } else {
          p->out_len += size_t(payload);
          p->tx.add(1);
          p->count_in(1, len);
          holds.queued(p);
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
    if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE) {
      // One packet (its checksum perhaps still to finish): readied where
      // it was read, so deliver() takes it from the arena with no copy.
      GsoError e;
      if (!vnet_plain(h) && !vnet_finish_single(h, pkt, len, &e)) return drop(p, Drop::BadVnet);
      if (len > p->send_max) return too_big(p, pkt, len);
      return deliver(p, pkt, len);
    }
    // Split a copy: deliver() builds frames where the packet sits now.
    memcpy(gsosrc.get(), pkt, len);
    GsoError e;
    split_peer = p;
    const int segs = gso_split(h, gsosrc.get(), len, segbuf.get(), kTunBufSize, &RouterLoop::split_sink, this, &e);
    if (segs < 0) return drop(p, Drop::BadVnet);
    split_packets.add(1);
    split_segments.add(uint64_t(segs));
  }

  static void split_sink(void* ctx, const uint8_t* seg, size_t len) {
    RouterLoop* l = static_cast<RouterLoop*>(ctx);
    Peer* p = l->split_peer;
    if (p->dead) return;
    if (len > p->send_max) return l->too_big(p, seg, len);
    l->deliver(p, seg, len);
  }

  // Whether p's datagrams may merge into USO runs (coalesce.h): it takes
  // them, and it has no limit (a limited peer's packets are counted one by
  // one: never merged).
  bool uso_ok(const Peer* p) const {
    return kUsoCoalesce && !p->shape_in && (p->caps & (kCapUso4 | kCapCsum)) == (kCapUso4 | kCapCsum);
  }

  // Whether p may be held (HoldList): a socket always; a handed-over tun
  // takes one packet a write, so holding pays only where its datagrams
  // merge into runs (write_held_tun): while its packets are datagrams that
  // may (a TCP stream's are not held for nothing), and not while its queue
  // is what its socket had not taken before the handoff (that goes to the
  // socket first, unheld).
  bool holdable(const Peer* p) const {
    if (p->tun_fd < 0) return true;
    return uso_ok(p) && p->mergeable && (p->held || p->out_len == 0);
  }

  // Hands one packet to p: with nothing queued for p, as a frame in the batch
  // arena (pkt is either already there, 4 bytes after arena_len, or copied
  // there); else appended to p's queue, behind what waits. A frame that
  // could never fit p's queue is dropped as queue_full, as before.
  // Its cost (packet_cost) is worked out once, for the shaper and the
  // peer's accounting.
  void deliver(Peer* p, const uint8_t* pkt, size_t len, uint8_t mod2 = kModPacket) {
    size_t cost;
    uint32_t segs;
    packet_cost(pkt, len, mod2, &cost, &segs);
    if (p->shape_in && !shape_pass(p, p->shape_in.get(), true, pkt, len, mod2, cost, segs)) return;
    deliver_now(p, pkt, len, mod2, cost, segs);
  }

  // deliver() past the peer's limit (or a shaped packet released). cost,
  // segs: the packet on the wire (packet_cost), counted as the peer's ip_in
  // once it is accepted: queued here, or sent from the batch (Peer::send).
  void deliver_now(Peer* p, const uint8_t* pkt, size_t len, uint8_t mod2, size_t cost, uint32_t segs) {
    close_run();
    const size_t need = kFrameHeaderSize + len;
    if (p->out_len > 0 || need > p->out_cap) {
      if (!p->enqueue(pkt, len, mod2)) return drop(p, Drop::QueueFull);
      p->tx.add(1);
      p->count_in(segs, cost);
      holds.queued(p, segs);
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
      slots.push_back(BatchSlot{f, uint32_t(need), -1, 1, segs, uint32_t(cost)});
      p->chain(slots.data(), slot);
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
      BatchSlot& s = slots[run_slot];
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
    flushing_batch = true;
    const bool spread = backlog && dirty.size() >= HoldList::kSpreadPeers;
    for (Peer* p : dirty) {
      p->dirty = false;
      if (!p->dead && !(holdable(p) && holds.hold(p, slots.data(), spread, now))) flush(p);
      p->batch_head = p->batch_tail = -1;
    }
    flushing_batch = false;
    submit_tun_writes();
    dirty.clear();
    slots.clear();
    arena_len = 0;
  }

  // Writes held peers held long enough: drain_ns when the tun drained, else
  // hold_ns (HoldList::release).
  void release_held(bool drained) {
    if (holds.empty()) return;
    flushing_batch = true;  // held tuns' writes go in one submission
    holds.release(now, drained, [this](Peer* p) { flush(p); });
    flushing_batch = false;
    submit_tun_writes();
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

  // Writes p's frames of this batch and its queue (Peer::send); a partial
  // write keeps the rest and waits for EPOLLOUT.
  void flush(Peer* p) {
    if (run_peer == p) close_run();  // never send half a run
    // A handed-over tun's queue is what its socket had not taken before the
    // handoff (written there first), or, held, packets for the tun.
    if (p->tun_fd >= 0 && (p->out_len == 0 || p->held)) return flush_tun(p);
    if (p->held && uso_ok(p)) merge_held(p);
    holds.writing(p);
    uint32_t full;
    const int e = p->send(slots.data(), &full);
    if (full) drops[int(Drop::QueueFull)].add(full);
    if (e != 0) return close_peer(p, errno_text("write", e));
    want_out(p, p->out_len > 0);
  }

  // A handed-off peer: this batch's packets for its tun, one write each (a
  // tun takes a packet whole or refuses it: nothing is queued), queued in
  // the ring with every other handed-off peer's and sent together at the
  // end of the batch (TunBatch::write_submit: one system call for many
  // vassals; a wakeup's packets spread over vassals cost one write() each
  // before). What its socket still had queued from before the handoff went
  // first (flush: out_len == 0 here).
  void flush_tun(Peer* p) {
    if (p->held) {
      holds.writing(p);
      write_held_tun(p);
    }
    for (int32_t s = p->batch_head; s >= 0; s = slots[s].next) {
      const BatchSlot& sl = slots[s];
      queue_tun_write(TunWrite{p, sl.segs, sl.len - uint32_t(kFrameHeaderSize), sl.ip_packets, sl.ip_bytes, false}, sl.ptr);
    }
    p->batch_head = p->batch_tail = -1;
    if (!flushing_batch) submit_tun_writes();
  }

  // A held tun's queue: the datagrams of one flow that waited side by side
  // merge into runs (coalesce.h: uso_merge_frames), so a flood spread over
  // many vassals costs each vassal's kernel one receive per run, not per
  // datagram (one peer's flood gets runs within a batch). Each frame is one
  // write, queued like the batch's; they were counted when held. The queue
  // is empty afterwards; its bytes stay as they are until the writes are
  // submitted (nothing is queued for p before: flush_batch and
  // release_held submit at their end).
  void write_held_tun(Peer* p) {
    uint8_t* q = p->out.get() + p->out_head;
    uso_merge_frames(q, p->out_len, kUsoMaxPacket, [&](uint8_t* f, size_t n, uint32_t segs) {
      count_run(p, segs);
      if (segs == 0) {
        size_t cost;
        packet_cost(f + kFrameHeaderSize, n, decode_frame_header(f).mod2, &cost, &segs);
      }
      queue_tun_write(TunWrite{p, segs, uint32_t(n), 0, 0, true}, f);
    });
    p->out_head = p->out_len = 0;
    p->queued.set(0);
  }

  // A held offload peer's socket queue, merged the same way before it is
  // sent: its device then writes a run to the vassal's tun with one write.
  // The queue holds whole frames only (a peer with a partial write waiting
  // is never held), and merging only shortens it.
  void merge_held(Peer* p) {
    p->out_len = uso_merge_frames(p->out.get() + p->out_head, p->out_len, kUsoMaxPacket,
                                  [&](uint8_t*, size_t, uint32_t segs) { count_run(p, segs); });
  }

  // A run of segs datagrams merged for p (uso_merge_frames), counted.
  void count_run(Peer* p, uint32_t segs) {
    if (segs < 2) return;
    p->uso_tx.add(1);
    uso_frames.add(1);
    uso_segments.add(segs);
  }

  // One frame (at f: its header, then the packet) for p's tun, queued in the
  // ring; written at once where the ring cannot take it.
  void queue_tun_write(const TunWrite& w, uint8_t* f) {
    // A plain frame (a fragment, an ICMP answer) gets the header the tun wants.
    const bool zero = decode_frame_header(f).mod2 != kModVnet;
    uint8_t* pkt = f + kFrameHeaderSize;
    int i = tun_batch.write_add(w.p->tun_fd, pkt, w.bytes, zero);
    if (i < 0 && tun_batch.writes_queued() > 0) {
      submit_tun_writes();  // the ring is full: what it holds goes first
      i = tun_batch.write_add(w.p->tun_fd, pkt, w.bytes, zero);
    }
    if (i < 0) tun_written(w, tun_write(w.p->tun_fd, pkt, w.bytes, zero));
    else tun_writes.push_back(w);
  }

  // The queued tun writes, sent; each counted for its peer or dropped.
  // Before any tun fd is closed (close_tun_fds) and before the arena the
  // packets sit in is reused (flush_batch).
  void submit_tun_writes() {
    const unsigned n = tun_batch.write_submit();
    for (unsigned i = 0; i < n && i < tun_writes.size(); i++) tun_written(tun_writes[i], tun_batch.write_ok(i));
    tun_writes.clear();
  }

  void tun_written(const TunWrite& w, bool ok) {
    if (!ok) return drop(w.p, Drop::TunWrite, w.segs);
    w.p->tx_bytes.add(w.bytes);
    if (w.counted) return;
    w.p->tx.add(w.segs);
    w.p->count_in(w.ip_packets, w.ip_bytes);
  }

  // p's socket filled and drained again: it reads a stream; grow its buffer.
  void drained(Peer* p) {
    p->sndbuf_drained_at = now;
    if (p->sndbuf_extra != 0) return;
    p->sndbuf_extra = sndbufs.grow(p->fd, &p->sndbuf_base);
    p->sndbuf_grown.set(p->sndbuf_extra);
  }

  // Grown peers idle for SndbufGrowth::kIdleNs give their growth back.
  void shrink_idle_sndbufs() {
    last_sndbuf_check = now;
    for (auto& p : peers) {
      if (p->sndbuf_extra == 0 || !SndbufGrowth::idle(p->fd, now, p->sndbuf_drained_at, p->out_len, p->sndbuf_base)) continue;
      sndbufs.shrink(p->fd, p->sndbuf_base, p->sndbuf_extra);
      p->sndbuf_extra = 0;
      p->sndbuf_grown.set(0);
    }
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
  // cannot starve the others. With other peers readable in the same wakeup,
  // the read is at most kSharedRead (and at least what completes a frame):
  // a round of every busy peer takes less time, so the latency a light
  // peer sees beside floods falls (router-fairness test), while a peer
  // alone still reads its whole buffer.
  void on_peer_readable(Peer* p) {
    const size_t limit = p->offload ? kMaxFramePayload : opts.max_frame;
    size_t want = p->in_cap - p->in_len;
    if (readable_peers > 1) want = std::min(want, std::max(kSharedRead, limit + kFrameHeaderSize));
    ssize_t n;
    if (handoff_possible(p)) {
      int fd;
      n = recv_with_fd(p->fd, p->in.get() + p->in_len, want, &fd, &closer);
      if (fd >= 0 && p->pending_fd >= 0) closer.close_later(fd);  // one waits already: a peer hands off once
      else if (fd >= 0) p->pending_fd = fd;
    } else {
      // An fd sent now is closed by the kernel as read() consumes it.
      n = read(p->fd, p->in.get() + p->in_len, want);
    }
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
      if (ct) prefetch_flow(buf + off + kFrameHeaderSize + h.size, p->in_len - off - kFrameHeaderSize - h.size, limit);
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

  // The connection table's slot of the next frame's packet (at next, avail
  // bytes read) starts loading while this one is routed: with a table larger
  // than the caches, one memory wait per packet fewer (bench/conntrack.ts).
  void prefetch_flow(const uint8_t* next, size_t avail, size_t limit) const {
    FrameHeader h;
    if (next_frame(next, avail, limit, &h) != FrameStatus::Ok) return;
    const uint8_t* pkt = next + kFrameHeaderSize;
    size_t len = h.size;
    if (h.mod2 == kModVnet) {
      if (len < kVnetHdrLen) return;
      pkt += kVnetHdrLen;
      len -= kVnetHdrLen;
    } else if (h.mod2 != 0) {
      return;
    }
    ct->prefetch(pkt, len);
  }

  void route_up(Peer* p, const FrameHeader& h, const uint8_t* payload) {
    if (h.mod1 != 0 || h.mod2 > kModHandoff) return drop(p, Drop::BadModifier);
    // A peer's rule block would let a vassal set its own rules (a uWSGI
    // misbehaviour): refused. opts.accept_rule_blocks is reserved.
    if (h.mod2 == kModRuleBlock) return refuse(p, Drop::RuleBlock, p->addr);
    if (h.mod2 == kModHello) return on_hello(p, payload, h.size);
    if (h.mod2 == kModHandoff) return on_handoff(p, h.size);
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
    // The router's rules, then the vassal's own (they can only narrow);
    // a flow is tracked once both accepted the packet.
    if (ct) {
      const CtLookup l = ct->lookup(pkt, len, now);
      const Verdict v = rules->out.judge(pkt, len, l.state);
      if (v != Verdict::Allow) {
        if (v == Verdict::Reject) reject(p, pkt, len);
        return drop(p, Drop::FirewallOut);
      }
      if (!peer_rules->pass_out(p->addr, pkt, len)) return drop(p, Drop::VassalFirewallOut);
      if (!track(p, l, p->addr)) return;
    } else {
      if (!rules->out.pass(pkt, len)) return drop(p, Drop::FirewallOut);
      if (!peer_rules->pass_out(p->addr, pkt, len)) return drop(p, Drop::VassalFirewallOut);
    }
    size_t cost;
    uint32_t segs;
    packet_cost(payload, h.size, h.mod2, &cost, &segs);
    if (p->shape_out && !shape_pass(p, p->shape_out.get(), false, payload, h.size, h.mod2, cost, segs)) return;
    to_tun(p, payload, h.size, h.mod2 == kModVnet, h.mod2 == kModVnet && vh.gso_type != VIRTIO_NET_HDR_GSO_NONE, cost, segs);
  }

  // A judged packet from p (payload: the frame's, vnet header first if
  // vnet) to the tun; once written, counted as p's ip_out (cost, segs:
  // packet_cost).
  void to_tun(Peer* p, const uint8_t* payload, size_t n, bool vnet_frame, bool gso, size_t cost, uint32_t segs) {
    if (coalescing_up && vnet_frame && !gso && coalesce_up(p, payload, n, cost, segs)) return;
    if (!write_tun(payload, n, vnet_frame)) return drop(p, Drop::TunWrite);
    counted_out(p, n - (vnet_frame ? kVnetHdrLen : 0), 1, cost, segs, vnet_frame, gso);
  }

  // bytes: IPv4 bytes written to our tun as `packets` packets; cost, segs:
  // what they were on the wire (packet_cost).
  void counted_out(Peer* p, size_t bytes, uint32_t packets, size_t cost, uint32_t segs, bool vnet_frame, bool gso) {
    p->ip_packets_out.add(segs);
    p->ip_bytes_out.add(cost);
    if (vnet_frame) {
      p->vnet_rx.add(packets);
      if (gso) p->gso_rx.add(1);
    }
    tun_tx.add(packets);
    tun_tx_bytes.add(bytes);
    busy.moved();
    slice.moved();
  }

  // A judged datagram read from a handed-over tun: it joins the open run of
  // its flow, or starts one (our tun takes USO), so a flood of small
  // datagrams costs one write a run, as a device's runs do (device.cc).
  // false: it goes out alone (to_tun writes it; the run is closed first).
  bool coalesce_up(Peer* p, const uint8_t* payload, size_t n, size_t cost, uint32_t segs) {
    const virtio_net_hdr h = vnet_read(payload);
    const uint8_t* pkt = payload + kVnetHdrLen;
    const size_t len = n - kVnetHdrLen;
    const int pl = uso_payload(h, pkt, len);
    if (up_run.count > 0 && up_peer == p && pl >= 0 && uso_fits(up_run, pkt, len, pl, kUsoMaxPacket) &&
        up_run.len + size_t(pl) <= kTunBufSize) {
      uso_append(&up_run, pkt, len);
      up_segs += segs;
      up_cost += cost;
      return true;
    }
    close_up_run();
    if (pl < 0 || !(caps & kCapUso4)) return false;
    memcpy(up_buf.get(), payload, n);
    uso_start(&up_run, up_buf.get(), n, pl);
    up_peer = p;
    up_segs = segs;
    up_cost = cost;
    return true;
  }

  // The open run to our tun, as one super-packet (one datagram: as it was).
  void close_up_run() {
    if (up_run.count == 0) return;
    const uint32_t count = up_run.count;
    const size_t n = uso_finish(&up_run);
    Peer* p = up_peer;
    up_peer = nullptr;
    if (!write_tun_now(up_buf.get(), n, true)) return drop(p, Drop::TunWrite, count);
    counted_out(p, n - kVnetHdrLen, count, up_cost, up_segs, true, false);  // a run made here, not a super-packet from the peer
  }

  // ---- rate limits (limiter.h) ----------------------------------------------

  // What a packet costs a shaper: its IPv4 bytes and 1 packet; a
  // super-packet costs its segments, each with its headers, as the wire
  // would carry them. payload passed vnet_check (from a peer) or is our
  // tun's.
  static void packet_cost(const uint8_t* payload, size_t n, uint8_t mod2, size_t* cost, uint32_t* segs) {
    *cost = n;
    *segs = 1;
    if (mod2 != kModVnet || n < kVnetHdrLen) return;
    const virtio_net_hdr h = vnet_read(payload);
    const uint8_t* pkt = payload + kVnetHdrLen;
    const size_t len = n - kVnetHdrLen;
    *cost = len;
    if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE || h.gso_size == 0) return;
    const size_t seg = vnet_segment_len(h, pkt, len);
    if (seg <= h.gso_size || seg - h.gso_size >= len) return;
    const size_t hdr = seg - h.gso_size;
    const size_t k = (len - hdr + h.gso_size - 1) / h.gso_size;
    if (k <= 1) return;
    *segs = uint32_t(k);
    *cost = len + (k - 1) * hdr;
  }

  // A limited peer's packet (cost, segs: packet_cost): true if its tokens
  // are there (it goes on now); else it waits in the shaper (false), or,
  // the queue full, is dropped as rate_limit (false).
  bool shape_pass(Peer* p, Shaper* s, bool in, const uint8_t* payload, size_t n, uint8_t mod2, size_t cost, uint32_t segs) {
    if (s->pass(now, cost, segs)) return true;
    // A super-packet waits whole only if the queue may hold it: one larger
    // than the queue's 50 ms (64 KiB is half a second at 1 Mbit/s) waits as
    // the segments that fit, as one that meets a fuller queue does.
    const bool split = segs > 1 && mod2 == kModVnet;
    uint32_t waiting = 1;
    if ((split && s->over_budget(cost, segs)) || !s->push(payload, n, mod2, cost, segs)) {
      waiting = split ? push_segments(p, s, payload, n) : 0;
      if (waiting == 0) {
        drop(p, Drop::RateLimit, segs);
        return false;
      }
    }
    (in ? p->shaped_in : p->shaped_out).add(waiting);
    (in ? p->shape_queued_in : p->shape_queued_out).set(s->queued_bytes());
    Counter& peak = in ? p->shape_peak_in : p->shape_peak_out;
    if (s->queued_segments() > peak.get()) peak.set(s->queued_segments());
    if (!p->shaping) {
      p->shaping = true;
      shaping.push_back(p);
    }
    const uint64_t d = s->due(now);
    if (shape_due == 0 || d < shape_due) shape_due = d;
    return false;
  }

  // A super-packet the queue cannot take whole: its segments wait one by one
  // while they fit and the rest is dropped as rate_limit, so TCP loses a
  // tail it can retransmit rather than a whole 64 KiB burst (at 10 Mbit/s
  // the queue's 50 ms is about one super-packet; whole drops cost TCP
  // timeouts). Segments wait as plain packets (checksums done). Returns how
  // many wait (0: none fit, or the packet does not split: the caller drops
  // it whole). payload passed vnet_check or is our tun's.
  struct SegmentPush {
    Shaper* s;
    uint32_t waiting = 0, dropped = 0;
  };
  static void shape_segment_sink(void* ctx, const uint8_t* seg, size_t len) {
    SegmentPush* sp = static_cast<SegmentPush*>(ctx);
    if (sp->dropped == 0 && sp->s->push(seg, len, kModPacket, len, 1)) sp->waiting++;
    else sp->dropped++;
  }
  uint32_t push_segments(Peer* p, Shaper* s, const uint8_t* payload, size_t n) {
    if (!segbuf || n <= kVnetHdrLen) return 0;
    SegmentPush sp{s};
    GsoError e;
    if (gso_split(vnet_read(payload), payload + kVnetHdrLen, n - kVnetHdrLen, segbuf.get(), kTunBufSize,
                  &RouterLoop::shape_segment_sink, &sp, &e) < 0 || sp.waiting == 0) {
      return 0;  // nothing was queued (a failed split emits nothing)
    }
    if (sp.dropped) drop(p, Drop::RateLimit, sp.dropped);
    return sp.waiting;
  }

  // Lets waiting packets go where their tokens came: out to the tun, in to
  // the peer (written at the end, as a batch). Peers with nothing left
  // waiting leave the list; shape_due becomes the next release.
  void release_shaped() {
    shape_due = 0;
    releasing = true;
    size_t keep = 0;
    for (size_t i = 0; i < shaping.size(); i++) {
      Peer* p = shaping[i];
      uint64_t due = 0;
      if (!p->dead && p->shape_out) {
        Shaper* s = p->shape_out.get();
        s->release(now, [&](const uint8_t* pl, size_t n, uint8_t mod2, size_t cost, uint32_t segs) {
          to_tun(p, pl, n, mod2 == kModVnet, mod2 == kModVnet && vnet_read(pl).gso_type != VIRTIO_NET_HDR_GSO_NONE, cost, segs);
        });
        p->shape_queued_out.set(s->queued_bytes());
        due = s->due(now);
        if (s->empty() && !s->active()) p->shape_out.reset();
      }
      if (!p->dead && p->shape_in) {
        Shaper* s = p->shape_in.get();
        s->release(now, [&](const uint8_t* pl, size_t n, uint8_t mod2, size_t cost, uint32_t segs) {
          if (!p->dead) deliver_now(p, pl, n, mod2, cost, segs);
        });
        p->shape_queued_in.set(s->queued_bytes());
        const uint64_t d = s->due(now);
        if (d != 0 && (due == 0 || d < due)) due = d;
        if (s->empty() && !s->active()) p->shape_in.reset();
      }
      if (p->dead || due == 0) {
        p->shaping = false;
        continue;
      }
      shaping[keep++] = p;
      if (shape_due == 0 || due < shape_due) shape_due = due;
    }
    // A peer closed meanwhile (a write failed) is still in the graveyard:
    // dropped from the list above, or now.
    shaping.resize(keep);
    releasing = false;
    flush_batch();
    shaping.erase(std::remove_if(shaping.begin(), shaping.end(), [](Peer* p) { return p->dead; }), shaping.end());
  }

  // New limits for every peer (set_limits) or for one that just got its
  // address: the limit of its address, else the default.
  void apply_limit(Peer* p) {
    if (p->addr == 0) return;  // limited from when it has an address
    const auto it = limit_by_addr.find(p->addr);
    const PeerLimit& l = it != limit_by_addr.end() ? it->second : default_limit;
    limit_direction(p, &p->shape_in, l.in);
    limit_direction(p, &p->shape_out, l.out);
  }

  // An unchanged limit keeps its buckets; a removed one keeps its shaper
  // until its waiting packets left (at once: it is unlimited now).
  void limit_direction(Peer* p, std::unique_ptr<Shaper>* s, const RateLimit& r) {
    const uint64_t t = mono_ns();
    if (!r.any()) {
      if (!*s) return;
      if ((*s)->empty()) return s->reset();
      (*s)->configure(r, t);
      shape_due = t;
      return;
    }
    if (!*s) s->reset(new Shaper());
    else if ((*s)->limit() == r) return;
    (*s)->configure(r, t);
    if (p->shaping) shape_due = t;  // its packets' release time changed
  }

  // One packet to the tun: a vnet tun takes a header first (with_hdr: the
  // payload starts with the peer's; else a zero header goes in front).
  bool write_tun(const uint8_t* payload, size_t n, bool with_hdr) {
    close_up_run();  // what was read before this packet goes before it
    return write_tun_now(payload, n, with_hdr);
  }

  bool write_tun_now(const uint8_t* payload, size_t n, bool with_hdr) {
    return tun_write(tun, payload, n, vnet && !with_hdr);
  }

  // A peer's offload hello (offload.h): never a source of its address.
  // With offloads on here, answered with ours; the peer may then send and
  // gets kModVnet frames. Off here: ignored (the peer stays plain).
  void on_hello(Peer* p, const uint8_t* payload, size_t len) {
    uint16_t peer_caps, peer_max;
    if (!hello_parse(payload, len, &peer_caps, &peer_max)) return drop(p, Drop::BadHello);
    if (!vnet) return;
    uint8_t hello[kHelloLen];
    hello_build(hello, addrs.gateway(), uint16_t(caps | (opts.handoff ? kCapHandoff : 0)), uint16_t(kMaxFramePayload));
    if (!p->enqueue(hello, kHelloLen, kModHello)) return drop(p, Drop::QueueFull);
    {
      std::lock_guard<std::mutex> g(stats_mu);
      p->offload = true;
      p->caps = peer_caps & kCapAll;
    }
    want_out(p, true);  // sent when the socket is writable, before any kModVnet
  }

  // ---- one hop: a peer's own tun (handoff.h) ------------------------------

  // Only a peer we offered it (offloads negotiated, handoff on) may hand
  // over its tun, once: only then is its socket read with recvmsg().
  bool handoff_possible(const Peer* p) const { return opts.handoff && p->offload && p->tun_fd < 0; }

  // The kModHandoff frame: the fd that came with it must be a tun as a moat
  // device opens it. Anything else is a protocol error: a device of ours
  // never sends it, so the peer is not one.
  void on_handoff(Peer* p, size_t len) {
    const int fd = p->pending_fd;
    p->pending_fd = -1;
    std::string why;
    if (!handoff_possible(p)) why = "a tun handed over without the router's offer";
    else if (len != 0) why = "a handoff frame with a payload";
    else if (fd < 0) why = "a handoff frame without an fd";
    if (why.empty() && !tun_handoff_check(fd, &why)) why = "handoff: " + why;
    if (why.empty() && !watch(fd, uint64_t(reinterpret_cast<uintptr_t>(p)) | kTagPeerTun, EPOLLIN))
      why = errno_text("epoll_ctl (peer tun)");
    if (!why.empty()) {
      closer.close_later(fd);
      RouterEvent e(RouterEvent::Type::ProtocolError);
      e.id = p->id;
      e.reason = "handoff";
      e.message = why;
      emit(std::move(e));
      return close_peer(p, "protocol_error");
    }
    std::lock_guard<std::mutex> g(stats_mu);
    p->tun_fd = fd;
  }

  // Packets from a handed-off peer's tun: each judged exactly as a kModVnet
  // frame from its socket would be (route_up). At most kPeerTunReads a
  // wakeup, fewer while other peers wait: a flood cannot starve them.
  // Reads go through the router's io_uring (tun_batch.h, its slots are free
  // between two host tun batches) several at once, as many as the last
  // wakeup found, doubling while every read finds a packet: a ping costs
  // one call, a flood a call per kPeerTunShared or more packets.
  void on_peer_tun(Peer* p, uint32_t ev) {
    coalescing_up = true;
    read_peer_tun(p, ev);
    coalescing_up = false;
    close_up_run();
  }

  void read_peer_tun(Peer* p, uint32_t ev) {
    const uint32_t budget = readable_peers > 1 ? kPeerTunShared : kPeerTunReads;
    uint32_t tried = 0;
    while (tried < budget && !p->dead) {
      if (tun_batch.ready()) {
        const uint32_t want = std::min(std::max<uint32_t>(p->tun_next, 1), budget - tried);
        if (tun_batch.read_from(p->tun_fd, want) == want) {
          uint32_t got = 0;
          bool drained = false;
          for (uint32_t i = 0; i < want && !p->dead; i++) {
            const int r = tun_batch.result(i);
            if (TunBatch::empty(r)) {
              drained = true;
            } else if (r < 0) {
              return close_peer(p, errno_text("tun read", -r));
            } else {
              got++;
              from_peer_tun(p, tun_batch.slot(i), size_t(r));
            }
          }
          tried += want;
          p->tun_next = TunBatch::next_after(want, drained, got, kPeerTunReads);
          // Every read found a packet: more may wait, and epoll (level-
          // triggered) says so at once; a lone packet (a ping) then costs
          // one call, not a second that finds nothing.
          if (drained || want < 4) break;
          continue;
        }  // io_uring failed for good: read() from here on
      }
      const ssize_t n = read(p->tun_fd, peer_tun_buf.get(), kTunBufSize);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
        return close_peer(p, errno_text("tun read"));
      }
      if (n == 0) break;
      tried++;
      from_peer_tun(p, peer_tun_buf.get(), size_t(n));
    }
    // The vassal's tun is gone (its namespace ended): the peer with it.
    if (!p->dead && (ev & (EPOLLERR | EPOLLHUP)) && !(ev & EPOLLIN)) close_peer(p, "tun gone");
  }

  // One packet read from p's tun (virtio_net_hdr first): a kModVnet frame's payload.
  void from_peer_tun(Peer* p, const uint8_t* buf, size_t n) {
    p->rx.add(1);
    p->rx_bytes.add(uint64_t(n));
    if (n > kMaxFramePayload) return drop(p, Drop::BadVnet);
    route_up(p, FrameHeader{0, uint16_t(n), kModVnet}, buf);
  }

  // Off the loop (fd_closer.h): the router may hold a tun's last reference.
  void close_tun_fds(Peer* p) {
    submit_tun_writes();  // none may reach a closed (or reused) fd
    closer.close_later(p->pending_fd);
    p->pending_fd = -1;
    if (p->tun_fd < 0) return;
    if (epfd >= 0) epoll_ctl(epfd, EPOLL_CTL_DEL, p->tun_fd, nullptr);
    closer.close_later(p->tun_fd);
    std::lock_guard<std::mutex> g(stats_mu);
    p->tun_fd = -1;
  }

  // ---- addresses ------------------------------------------------------------

  // Takes src as p's address, or says why not (addresses.h: only inside the
  // learnable network, never bound or reserved for another). The holder of
  // an address keeps it (uWSGI let any peer take over another's address).
  // Runs only while p has no address: a peer that holds one never gets here.
  bool learn(Peer* p, uint32_t src, Drop* why) {
    *why = addrs.refusal(*p, src, now);
    if (*why != Drop::Count) return false;
    assign(p, src);
    return true;
  }

  // A static binding gives the peer its address at once, if it is free.
  void try_bound_address(Peer* p) {
    uint32_t a;
    if (p->addr == 0 && addrs.bound_free(*p, &a)) assign(p, a);
  }

  void assign(Peer* p, uint32_t a) {
    {
      std::lock_guard<std::mutex> g(stats_mu);  // stats() reads addr
      p->addr = a;
    }
    addrs.take(p, a);
    apply_limit(p);
    RouterEvent e(RouterEvent::Type::PeerAddr);
    e.id = p->id;
    e.addr = a;
    emit(std::move(e));
  }

  // ---- peers ----------------------------------------------------------------

  void on_accept() {
    for (int k = 0; k < kAcceptBatch; k++) {
      const int fd = accept4(listener.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
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
      const size_t in_cap = std::max<size_t>(size_t(vnet ? kMaxFramePayload : opts.max_frame) + kFrameHeaderSize, kPeerInMin);
      std::unique_ptr<Peer> p(new Peer(next_id++, fd, cred.uid, cred.gid, uint32_t(cred.pid), in_cap,
                                       std::min<uint32_t>(opts.max_frame, uint32_t(kMaxFramePayload)), opts.queue_bytes));
      struct epoll_event e;
      memset(&e, 0, sizeof e);
      e.events = EPOLLIN;
      e.data.ptr = p.get();
      if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
        emit_error(errno_text("epoll_ctl (peer)"));
        close(fd);
        continue;
      }
      // Once per peer: the start time that names its process (never per packet).
      p->start = peer_start_time(fd, pid_t(cred.pid));
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
      up.start = raw->start;
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
    epoll_ctl(epfd, EPOLL_CTL_MOD, listener.fd, &e);
  }

  // epoll_wait's timeout: a second, or until accepting resumes, a shaped
  // packet may leave or a hold may be written if the tun stays drained
  // (rounded up to the next millisecond: the tokens that come meanwhile are
  // kept, up to the burst).
  int wait_ms() const {
    // The soonest of the deadlines set (0: not set).
    uint64_t until = 0;
    for (const uint64_t due : {holds.drain_due(), accept_resume_at, shape_due})
      if (due != 0 && (until == 0 || due < until)) until = due;
    if (until == 0) return 1000;
    const uint64_t t = mono_ns();
    if (t >= until) return 0;
    return int(std::min<uint64_t>((until - t + 999999) / 1000000, 1000));
  }

  void close_peer(Peer* p, const std::string& reason) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, p->fd, nullptr);
    close(p->fd);
    p->fd = -1;
    close_tun_fds(p);
    p->dead = true;
    holds.forget(p);
    if (p->sndbuf_extra != 0) sndbufs.release(p->sndbuf_extra);
    p->sndbuf_extra = 0;
    // Packets still waiting in its shapers go with it: counted as rate_limit,
    // the router's and the peer's (its final counters below include them).
    const uint64_t waiting = (p->shape_in ? p->shape_in->queued_segments() : 0) +
                             (p->shape_out ? p->shape_out->queued_segments() : 0);
    drops[int(Drop::RateLimit)].add(waiting);
    p->drops[int(Drop::RateLimit)].add(waiting);
    p->shape_queued_in.set(0);
    p->shape_queued_out.set(0);
    if (p->shaping && !releasing) {
      p->shaping = false;
      shaping.erase(std::remove(shaping.begin(), shaping.end(), p), shaping.end());
    }
    addrs.release(p);
    RouterEvent e(RouterEvent::Type::PeerDown);
    e.id = p->id;
    e.addr = p->addr;
    e.reason = reason;
    // Its last counters, for accounting: what it did since the last stats()
    // would be lost with it. Nothing counts for it from here on (dead).
    e.stats.reset(new PeerStats(p->stats()));
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

  // n: the packets dropped (a super-packet's segments: the packets its
  // sender sent, as the ip counters count them).
  void drop(Peer* p, Drop why, uint32_t n = 1) {
    drops[int(why)].add(n);
    if (p) p->drops[int(why)].add(n);
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

  void emit_notice(const std::string& message) {
    RouterEvent e(RouterEvent::Type::Notice);
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
    std::unique_ptr<std::vector<PeerLimit>> limits;
    std::unique_ptr<PeerRuleTable> prt;
    bool have_bindings = false;
    Bindings b;
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
      b = std::move(pending->bindings);
      limits = std::move(pending->limits);
      prt = std::move(pending->peer_rules);
    }
    if (prt) install_peer_rules(std::move(prt));
    if (rs) install_rules(std::move(rs));
    if (have_bindings) set_bindings(b);
    if (limits) set_limits(*limits);
    return false;
  }

  // New bindings govern learning from now on; peers keep addresses they
  // hold. Unlearned peers now bound (or whose vassal has a reservation) get
  // their address.
  void set_bindings(const Bindings& b) override {
    addrs.set_bindings(b);
    for (auto& p : peers) try_bound_address(p.get());
  }

  // The whole set replaced; every connected peer takes its (new) limit.
  void set_limits(const std::vector<PeerLimit>& l) override {
    limit_by_addr.clear();
    default_limit = PeerLimit();
    for (const PeerLimit& x : l) {
      if (x.addr == 0) default_limit = x;
      else limit_by_addr[x.addr] = x;
    }
    for (auto& p : peers) apply_limit(p.get());
  }

  void install_rules(std::unique_ptr<RuleSet> rs) override {
    rs->in.inherit(rules->in, rs->carry_in);
    rs->out.inherit(rules->out, rs->carry_out);
    // Flows stay across reloads while rules name states; a table that must
    // grow starts empty (its entries are dropped); no state: no table.
    conntrack_install(&ct, rs->stateful(), rs->ct);
    ct_entries.set(ct ? ct->size() : 0);
    ct_capacity.set(ct ? ct->capacity() : 0);
    {
      std::lock_guard<std::mutex> g(stats_mu);
      rules.swap(rs);
    }
    // rs (the old set) is freed here, outside the lock.
  }

  void install_peer_rules(std::unique_ptr<PeerRuleTable> t) override {
    t->inherit(*peer_rules);
    {
      std::lock_guard<std::mutex> g(stats_mu);
      peer_rules.swap(t);
    }
    // t (the old table) is freed here, outside the lock.
  }

  // ---- for the controlling side ---------------------------------------------

  std::vector<RouterEvent> take_events() override {
    wake_pending.store(false);
    std::vector<RouterEvent> out;
    std::lock_guard<std::mutex> g(ev_mu);
    out.swap(events);
    return out;
  }

  RouterStats stats() const override {
    RouterStats s;
    std::lock_guard<std::mutex> g(stats_mu);
    s.rx_packets = tun_rx.get();
    s.rx_bytes = tun_rx_bytes.get();
    s.tun_read_calls = tun_read_calls.get();
    s.tun_queues = queues_open.load(std::memory_order_relaxed);
    s.tun_steered = steered.load(std::memory_order_relaxed);
    s.tx_packets = tun_tx.get();
    s.tx_bytes = tun_tx_bytes.get();
    s.fragmented = fragmented.get();
    s.frag_needed = frag_needed.get();
    s.gso_split = split_packets.get();
    s.gso_segments = split_segments.get();
    s.uso_tx = uso_frames.get();
    s.uso_segments = uso_segments.get();
    s.held_frames = holds.frames();
    s.held_writes = holds.writes();
    s.sndbuf_grown_peers = sndbufs.peers();
    s.sndbuf_grown_bytes = sndbufs.used();
    s.sndbuf_grows = sndbufs.grows();
    s.busy_polls = busy.polls();
    s.busy_poll_caught = busy.caught();
    s.busy_poll_ns = busy.poll_ns();
    for (int i = 0; i < kDropCount; i++) s.drops[i] = drops[i].get();
    s.conntrack_entries = ct_entries.get();
    s.conntrack_slots = ct_capacity.get();
    s.rejects = rejects.get();
    s.rejects_limited = rejects_limited.get();
    s.peers.reserve(peers.size());
    for (const auto& p : peers) s.peers.push_back(p->stats());  // under stats_mu: addr and offload are written under it
    const RuleSet& r = *rules;
    for (size_t i = 0; i < r.in.size; i++) s.hits_in.push_back(r.in.hits[i].get());
    for (size_t i = 0; i < r.out.size; i++) s.hits_out.push_back(r.out.hits[i].get());
    for (const auto& ps : peer_rules->sets) {
      PeerRuleHits h{ps->key, ps->addr, {}, {}};
      for (size_t i = 0; i < ps->in.size; i++) h.in.push_back(ps->in.hits[i].get());
      for (size_t i = 0; i < ps->out.size; i++) h.out.push_back(ps->out.hits[i].get());
      s.peer_hits.push_back(std::move(h));
    }
    return s;
  }
};

}  // namespace

std::unique_ptr<Router::Loop> Router::Loop::create(const RouterOptions& opts, Router::Pending* pending) {
  return std::unique_ptr<Router::Loop>(new RouterLoop(opts, pending));
}

}  // namespace moat
