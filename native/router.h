// router.h: the router's data path. One thread moves IPv4 packets between a
// tun device and many peers (vassal devices) connected to a unix stream
// socket, speaking uWSGI 2.0's tuntap framing (frame.h).
//
//   up   (peer -> tun, chain "out"): read many frames per read(), check the
//        frame and the IPv4 header, learn/check the peer's source address,
//        classify, write the packet to the tun device.
//   down (tun -> peer, chain "in"): read up to 64 packets per wakeup, an
//        equal share from each of the tun's ready queues (tun_queues), check,
//        classify, find the peer by destination (hash map), append to its
//        bounded outbound queue; after the batch one write() per dirty peer.
//        A packet above the peer's frame limit (Peer::send_max, from
//        Options::max_frame) is fragmented (DF clear) or answered with ICMP
//        fragmentation-needed carrying that limit (DF set): no PMTU black hole.
//
// Limits: IPv4 only (other frames are dropped and counted, the peer stays);
// a peer's frames are at most Options::max_frame bytes of payload (more is a
// protocol error that closes that peer only); a peer's outbound queue holds at
// most Options::queue_bytes (more is dropped as queue_full for that peer only;
// the loop never blocks on a peer). No allocation per packet once running.
// Rate limits (set_limits, limiter.h): a limited peer's packets over its
// rate wait in a small queue per direction (50 ms of the rate) and leave
// when tokens allow (the loop's epoll timeout wakes it); what does not fit
// is dropped as rate_limit. An unlimited peer does not touch any of it.
//
// One hop (RouterOptions::handoff, handoff.h): a moat device may hand over
// its tun; the router then reads it (up, judged as the peer's frames are)
// and writes it (down) instead of the peer's socket.
//
// Threads: start/stop/set_rules/set_bindings/set_limits/relisten/stats/take_events may be called
// from any one controlling thread; the data path runs on the router's own
// thread, which enters Options::netns before opening anything.
//
// Syscalls (loop thread): setns, open/ioctl (tun; TUNSETSTEERINGEBPF and
// bpf(BPF_PROG_LOAD) at start, tun.h), socket/bind/listen/chmod/
// chown/lstat/unlink/connect (socket file), epoll_create1/epoll_ctl/
// epoll_wait, eventfd read/write, accept4, getsockopt(SO_PEERCRED), the
// peer's start time at accept (peer_identity.h: getsockopt(SO_PEERPIDFD),
// open/read /proc/PID/stat, pidfd_send_signal), read/send(MSG_NOSIGNAL),
// write (tun), getifaddrs (netlink), clock_gettime, close; for handed-over
// tuns (RouterOptions::handoff, handoff.h) recvmsg (SCM_RIGHTS), fstat,
// ioctl(TUNGETIFF, TUNGETVNETHDRSZ), fcntl, io_uring_enter, write/writev.
// This file includes no napi.h (router_binding.cc does).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "drops.h"
#include "conntrack.h"
#include "limiter.h"
#include "peer_rules.h"
#include "rule.h"

namespace moat {

// Who may use which address. A peer is named by its SO_PEERCRED uid and pid
// and by that process's start time (peer_identity.h: a new process reusing
// the pid number has another, so it never inherits a binding). A peer
// matches a binding when its uid equals the binding's (-1: any) and, for a
// pid binding, its pid and start time both do. A matching peer may use only
// the binding's address (a pid binding before a uid binding), and an address
// named by any binding may be used only by a peer matching one of its
// bindings: a binding with uid -1 and pid -1 matches nobody, so it is a pure
// reservation (the emperor reserves the address of a vassal file not
// deployed this way).
//
// vassal (the emperor's key for one vassal file and the address it names;
// 0: none): the address a vassal's peer takes, learned or bound, stays
// reserved for that vassal when the peer disconnects, and a later peer
// matching a binding of the same vassal (its next runtime) gets it back at
// once. The reservation ends only when no binding names the vassal any more
// (the emperor removed the vassal, or gave it a new key because its file
// names another address). addr 0 (with a vassal): the vassal learns its
// address from its first packet.
struct Binding {
  int64_t uid = -1;
  int64_t pid = -1;
  uint64_t start = 0;    // the pid's start time (peer_identity.h); required with a pid
  uint32_t vassal = 0;
  uint32_t addr = 0;     // IPv4, host order; 0: learned (vassal bindings only)
};

// Where an address no binding gives may be learned from: the emperor's
// vassal network (its network and broadcast addresses never; the router's
// own addresses never, wherever they are). none: nothing is learned.
struct LearnNet {
  bool none = false;
  uint32_t net = 0;      // host order, masked
  uint32_t mask = 0;     // 0: any address (a router without an emperor)
};

// What the controlling side hands over at once: the bindings and the
// learnable network, so no address is judged by a mix of old and new.
struct Bindings {
  std::vector<Binding> list;
  LearnNet learn;
};

// A peer's rate limits (limiter.h) by its address. addr 0: the default for
// every peer without a limit of its own. out: from the peer toward the tun;
// in: toward the peer. A direction whose RateLimit has no rate is unlimited.
struct PeerLimit {
  uint32_t addr = 0;  // IPv4, host order
  RateLimit in, out;
};

struct RouterOptions {
  std::string tun_name;
  std::string netns;          // "" or a netns file the loop thread enters first
  std::string socket_path;
  uint32_t socket_mode = 0660;
  int64_t socket_uid = -1;    // -1 keeps
  int64_t socket_gid = -1;
  // Every value below comes from the option table (TypeScript sends each:
  // router_binding.cc requires them); native code has no defaults of its
  // own, only the limits in option_bounds.h.
  uint32_t max_frame = 0;     // largest payload accepted from a peer (<= 65535)
  uint32_t queue_bytes = 0;
  // Spread traffic under a backlog: how long a peer's frames may wait to
  // share one write with later ones (peer.h, HoldList); 0: never held.
  uint32_t hold_us = 0;
  // Queues of the tun device toward the router (IFF_MULTI_QUEUE), packets
  // steered to them by destination address and read in turn, so a flood
  // toward one vassal fills its own queue, not its neighbours'
  // (docs/multiqueue.md); 1: one queue, as uWSGI's.
  uint32_t tun_queues = 0;
  // Each peer socket's send buffer (sndbuf.h); 0: the kernel's (a large one
  // stretches how much a peer that stops reading absorbs before its queue
  // fills and drops are counted).
  uint32_t sndbuf = 0;
  // A peer that streams (its buffer filled and drained again) gets a send
  // buffer of sndbuf_busy bytes while the growths of all peers stay within
  // sndbuf_budget bytes (as the kernel keeps them: twice what is asked);
  // idle, it gets its size back (sndbuf.h, SndbufGrowth). 0: never grown.
  uint32_t sndbuf_busy = 0;
  uint64_t sndbuf_budget = 0;
  // Latency: how long the loop polls after moving a packet before it
  // sleeps (busy_poll.h); 0: never.
  uint32_t busy_poll_us = 0;
  // Offloads toward moat devices that ask for them (docs/offload.md): the tun
  // is opened with IFF_VNET_HDR and TSO/USO/checksum offload; plain peers get
  // plain packets (super-packets split here).
  bool offload = false;
  // One hop (handoff.h, docs/one-hop.md): offer moat devices that
  // negotiated offloads to take their tun; the router then reads and
  // writes it itself. Needs offload.
  bool handoff = false;
  bool accept_rule_blocks = false;  // reserved: rule blocks are always refused for now
  Bindings bindings;
};

struct PeerStats {
  uint32_t id, addr, uid, gid, pid;
  // uWSGI's tuntap peer stats call "tx"/"rx" the bytes the router wrote to /
  // read from the peer's socket, 4-byte headers included (plugins/tuntap/
  // common.c: uttp->rx += rlen after read(), uttp->tx += rlen after write()).
  // Here tx/rx count packets (tx: router -> peer, queued for the peer;
  // rx: peer -> router, every whole frame received) and tx_bytes/rx_bytes
  // count socket bytes exactly as uWSGI's tx/rx do.
  uint64_t tx, rx, tx_bytes, rx_bytes;
  uint64_t dropped;
  uint64_t drops[kDropCount];
  uint64_t queued;
  bool offload;                  // offloads negotiated with this peer
  bool handoff;                  // the router holds the peer's tun (handoff.h): packets skip the socket
  uint64_t vnet_rx, gso_rx;      // kModVnet frames from the peer; of them super-packets
  uint64_t vnet_tx, gso_tx;      // kModVnet frames to the peer; of them super-packets
  uint64_t uso_tx;               // of them runs of UDP datagrams merged here
  uint64_t sndbuf_grown;         // bytes its send buffer grew by (RouterOptions::sndbuf_busy); 0: not grown
  // Rate limits (set_limits): packets that waited in the shaper, each
  // direction; the bytes (IPv4 lengths) waiting there now. Drops for a
  // limit are drops[rate_limit].
  uint64_t shaped_in, shaped_out;
  uint64_t shape_queued_in, shape_queued_out;
  uint64_t shape_peak_in, shape_peak_out;   // most packets (segments) waiting at once
  // What the peer's traffic was on the wire, for accounting: IPv4 packets
  // and their bytes, a super-packet as its segments with their headers
  // (what a shaper charges). out: from the peer, counted when written to
  // the tun; in: toward the peer, counted when accepted for it (where tx
  // is; a shaped packet when it leaves the shaper). A dropped packet is
  // counted only in drops.
  uint64_t ip_packets_in, ip_packets_out, ip_bytes_in, ip_bytes_out;
};

struct RouterEvent {
  // Error: something failed, the router goes on. Fatal: the router cannot go
  // on (its tun device is gone); the loop keeps its peers until stop().
  // Notice: a recovery worth a log line (accepting again after a pause).
  enum class Type { PeerUp, PeerAddr, PeerDown, Refused, ProtocolError, Error, Fatal, Notice };
  explicit RouterEvent(Type t) : type(t) {}
  Type type;
  uint32_t id = 0;
  uint32_t uid = 0, gid = 0, pid = 0;  // PeerUp
  uint64_t start = 0;                  // PeerUp: the pid's start time (0: unknown, gone)
  uint32_t addr = 0;                   // PeerAddr, PeerDown, Refused
  uint64_t count = 0;                  // Refused: drops since the previous event
  std::string reason;                  // PeerDown, Refused, ProtocolError
  std::string message;                 // Error, Fatal, Notice; ProtocolError: the detail (may be empty)
  // PeerDown: the peer's counters as it closed, its last (null otherwise:
  // an event waiting for JS stays small).
  std::unique_ptr<PeerStats> stats;
};

struct RouterStats {
  uint64_t rx_packets, rx_bytes;  // read from the tun device
  uint64_t tun_read_calls;        // system calls that read them (batched reads: tun_batch.h)
  uint32_t tun_queues;            // queues of the tun the router reads (RouterOptions::tun_queues)
  bool tun_steered;               // more than one, steered by destination (else by flow hash)
  uint64_t tx_packets, tx_bytes;  // written to the tun device
  uint64_t fragmented;            // packets (DF clear) split to fit a peer's frame limit
  uint64_t frag_needed;           // ICMP fragmentation-needed answers written to the tun
  uint64_t gso_split;             // super-packets split here for a plain peer
  uint64_t gso_segments;          // the packets those splits produced
  uint64_t uso_tx;                // UDP runs merged into one super-packet for an offload peer
  uint64_t uso_segments;          // the datagrams in them
  uint64_t held_frames;           // frames held to share a write (RouterOptions::hold_us)
  uint64_t held_writes;           // writes that carried held frames
  uint64_t sndbuf_grown_peers;    // peers whose send buffer is grown now (RouterOptions::sndbuf_busy)
  uint64_t sndbuf_grown_bytes;    // what those growths add up to (within sndbuf_budget)
  uint64_t sndbuf_grows;          // growths so far
  uint64_t busy_polls, busy_poll_caught, busy_poll_ns;  // polls before sleeping (busy_poll.h); those an event ended; time in them
  uint64_t drops[kDropCount];
  uint64_t conntrack_entries;     // flows tracked (conntrack.h; 0 while no rule names a state)
  uint64_t conntrack_slots;       // the table's slots (32 bytes each); 0: no table
  uint64_t rejects;               // answers sent to rejected packets (reject.h)
  uint64_t rejects_limited;       // answers not sent: over the rate limit
  std::vector<PeerStats> peers;
  std::vector<uint64_t> hits_in, hits_out;
  std::vector<PeerRuleHits> peer_hits;  // set_peer_rules: each set's counters
};

// One peer's own rules (peer_rules.h) as set_peer_rules takes them.
struct PeerRuleSpec {
  uint32_t key = 0;
  uint32_t addr = 0;
  std::vector<Rule> in, out;
  std::vector<int32_t> carry_in, carry_out;  // against the set with this key in the previous call
};

class Router {
 public:
  explicit Router(RouterOptions opts);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Starts the loop thread and waits for its setup (netns, tun, socket).
  // `wake` is called on the loop thread when events are waiting (at most once
  // until take_events() is called). Returns false with *err; nothing is left
  // behind then.
  bool start(std::function<void()> wake, std::string* err);
  // Stops the loop, closes everything, unlinks the socket file if it is still
  // ours. Idempotent.
  void stop();
  bool running() const { return running_; }

  // Builds both chains here, hands them to the loop, which swaps them between
  // two batches. carry[i]: index of the old rule whose hit counter rule i
  // inherits, or -1 (missing entries count as -1).
  // ct: the connection table's limits and timeouts, used when a rule names
  // a state (conntrack.h).
  void set_rules(std::vector<Rule> in, std::vector<Rule> out,
                 std::vector<int32_t> carry_in, std::vector<int32_t> carry_out,
                 ConntrackConfig ct = ConntrackConfig());
  void set_bindings(Bindings bindings);
  // Replaces the whole set of rate limits (PeerLimit; at most one per
  // address, addr 0 the default), between two batches. Connected peers keep
  // their connections, counters and waiting packets; their buckets take the
  // new rates (starting full).
  void set_limits(std::vector<PeerLimit> limits);
  // Replaces every peer's own rules (peer_rules.h: a packet passes only if
  // the router's chain and its peer's both accept it), compiled here and
  // swapped in between two batches; counters follow each set's key.
  void set_peer_rules(std::vector<PeerRuleSpec> sets);
  // The socket file or its directory was removed (the caller recreated the
  // directory): binds a new listening socket at the same path, between two
  // batches, and waits for the loop's answer (at most 5 s). Connected peers
  // stay. false with *err: the old socket stays in place.
  bool relisten(std::string* err);

  std::vector<RouterEvent> take_events();
  RouterStats stats() const;

  struct Loop;     // the loop thread's side (router_loop.h, router.cc)
  struct Pending;  // what this side hands it (router_loop.h)

 private:
  void notify();

  RouterOptions opts_;
  std::thread thread_;
  bool running_ = false;
  int control_fd_ = -1;  // eventfd
  std::unique_ptr<Pending> pending_;  // before loop_: the loop keeps a pointer to it
  std::unique_ptr<Loop> loop_;
};

}  // namespace moat
