// peer.h: one vassal connection as the router's loop sees it, and its way
// out. A Peer has its socket, credentials and address, an input buffer that
// reassembles frames, a bounded outbound byte queue and its counters. Its
// way out, in the order a tun batch takes it (router.cc, flush_batch()):
//
//   BatchSlot   this batch's frames for the peer, built in place in the
//               router's arena and chained per peer (no copy);
//   HoldList    holding (RouterOptions::hold_us): under a tun backlog a
//               peer's few frames wait in its queue for later ones, so that
//               one write carries several;
//   Peer::send  one sendmsg() of the batch's frames, then one send() of the
//               queue; what the socket does not take is queued, the rest of
//               a cut frame always, whole frames while they fit.
//
// Ownership and threads: only the loop thread mutates a Peer. Counters are
// relaxed atomics written by that one thread (a plain load + store, no locked
// instruction), so stats() may read them from another thread while the peer
// is listed.
// Limits: the input buffer holds max(max_frame + 4, 64 KiB) bytes; the
// outbound queue holds at most queue_bytes; both are allocated once, when the
// peer is accepted. Nothing here allocates per packet.
// Syscalls (peer.cc): sendmsg, send (MSG_NOSIGNAL | MSG_DONTWAIT). Epoll and
// closing a peer are the loop's: a failed write returns its errno.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>

#include "counter.h"
#include "drops.h"
#include "frame.h"
#include "limiter.h"

namespace moat {

struct PeerStats;  // router.h

// One frame of the current tun batch, in the router's arena. A peer's frames
// are chained through next (Peer::batch_head/tail; -1 ends the chain).
struct BatchSlot {
  uint8_t* ptr;
  uint32_t len;   // frame bytes, header included
  int32_t next;
  uint32_t segs;  // datagrams in the frame (> 1: a USO run merged here)
  // What the frame is on the wire (Peer::ip_in): IPv4 packets, a
  // super-packet's segments each, and their bytes with headers.
  uint32_t ip_packets;
  uint32_t ip_bytes;
};

struct alignas(64) Peer {
  // in_cap: input buffer bytes; queue_bytes: the outbound queue's bound.
  Peer(uint32_t id, int fd, uint32_t uid, uint32_t gid, uint32_t pid, size_t in_cap, uint32_t send_max,
       size_t queue_bytes);

  // Hot: what every packet to or from the peer reads or writes, together in
  // the first cache lines (the struct is line-aligned). With 1,000 peers
  // each packet finds its peer's state cold, so each line it touches is a
  // miss (docs/scale.md).
  uint32_t id = 0;
  int fd = -1;
  uint32_t addr = 0;       // 0 until learned (0.0.0.0 is never a peer address)
  bool dead = false;       // closed, waiting to be freed at the end of the wakeup
  bool dirty = false;      // has frames to write after this batch
  bool want_out = false;   // EPOLLOUT registered (a write was partial)
  // Offloads negotiated (offload.h): the peer sent a valid hello and got
  // ours; it then takes kModVnet frames of up to 65535 bytes and may send
  // them. caps: what its hello said it takes. Written under stats_mu.
  bool offload = false;
  bool mergeable = false;  // the last packet routed to it may join a USO run (coalesce.h)
  // Held (HoldList): frames wait in the queue, not yet written;
  // held_frames counts their datagrams, held_since is when the first was held.
  bool held = false;
  uint16_t caps = 0;
  // Largest packet this peer can read in one frame. uWSGI's device reads into
  // 8192-byte buffers (8188 of payload); set from the router's max_frame at
  // accept (configuration; a later negotiation may raise it per peer). Bigger
  // packets get ICMP fragmentation-needed (DF) or are fragmented.
  uint32_t send_max = 8188;
  // One hop (handoff.h): the vassal's tun, read and written here (-1: the
  // socket carries the packets). Written under stats_mu.
  int tun_fd = -1;
  // This tun batch's frames for the peer (BatchSlot indexes; -1: none).
  int32_t batch_head = -1, batch_tail = -1;
  uint32_t held_frames = 0;
  uint64_t held_since = 0;

  // Output: queued frames are out[out_head, out_head + out_len).
  std::unique_ptr<uint8_t[]> out;
  size_t out_cap = 0;
  size_t out_head = 0;
  size_t out_len = 0;

  // Rate limits (limiter.h), null while the direction is unlimited (the
  // unlimited path only tests the pointer). out: from the peer toward the
  // tun; in: toward the peer.
  std::unique_ptr<Shaper> shape_in, shape_out;

  Counter tx, tx_bytes, queued;
  // Accounting (PeerStats::ip_*): IPv4 packets and bytes as the wire
  // carries them. in: accepted for the peer (where tx is counted); out:
  // written to the tun.
  Counter ip_packets_in, ip_bytes_in;
  Counter rx, rx_bytes, ip_packets_out, ip_bytes_out;

  // Input: bytes read from the socket, not yet a whole frame at the front.
  std::unique_ptr<uint8_t[]> in;
  size_t in_cap = 0;
  size_t in_len = 0;

  // Cold from here: identity, rarely changed state, the less common counters.
  uint32_t uid = 0, gid = 0, pid = 0;
  uint64_t start = 0;      // the pid's start time at accept (peer_identity.h); 0: gone
  int pending_fd = -1;     // an fd received and not yet claimed by a kModHandoff frame
  uint32_t tun_next = 1;   // reads to try at once on tun_fd (TunBatch's policy, per peer)
  // Send buffer growth (sndbuf.h, SndbufGrowth): the bytes added (0: not
  // grown), the size before, and when the buffer last drained after filling.
  uint32_t sndbuf_extra = 0, sndbuf_base = 0;
  uint64_t sndbuf_drained_at = 0;
  Counter sndbuf_grown;  // sndbuf_extra, for stats() from other threads

  // Rate limiting of 'refused' events: per reason, the time of the last event,
  // the drops since, and the last address refused.
  uint64_t refused_at[kDropCount] = {};
  uint64_t refused_count[kDropCount] = {};
  uint32_t refused_addr[kDropCount] = {};

  // kModVnet frames received / sent, and those that were GSO super-packets.
  Counter vnet_rx, gso_rx, vnet_tx, gso_tx;
  Counter uso_tx;  // kModVnet frames that are runs of datagrams merged here (coalesce.h)
  Counter drops[kDropCount];

  // shaping: listed in the loop's shaping list (packets wait in one of the
  // shapers). Packets that waited in a shaper; bytes (their cost) waiting
  // now; the most packets (segments) that waited at once, the queue's
  // high-water mark.
  bool shaping = false;
  Counter shaped_in, shaped_out, shape_queued_in, shape_queued_out;
  Counter shape_peak_in, shape_peak_out;

  void count_in(uint64_t packets, uint64_t bytes) {
    ip_packets_in.add(packets);
    ip_bytes_in.add(bytes);
  }

  // Appends one frame (header + packet) to the outbound queue; false if the
  // queue cannot take it. Compacts the queue when the tail has no room.
  bool enqueue(const uint8_t* pkt, size_t len, uint8_t mod2 = kModPacket) {
    const size_t need = kFrameHeaderSize + len;
    if (out_len + need > out_cap) return false;
    if (out_head + out_len + need > out_cap) compact();
    uint8_t* p = out.get() + out_head + out_len;
    encode_frame_header(p, static_cast<uint16_t>(len), mod2);
    memcpy(p + kFrameHeaderSize, pkt, len);
    out_len += need;
    return true;
  }

  // Appends raw bytes (the unsent rest of a batch) to the queue; the caller
  // checked that they fit.
  void append(const uint8_t* p, size_t n) {
    if (out_head + out_len + n > out_cap) compact();
    memcpy(out.get() + out_head + out_len, p, n);
    out_len += n;
  }

  // Whether n more bytes fit right behind the queue's last frame, where
  // they extend it in place (a USO run growing in the queue).
  bool room_behind(size_t n) const { return out_head + out_len + n <= out_cap; }

  // Adds slot to this batch's chain of frames.
  void chain(BatchSlot* slots, int32_t slot) {
    if (batch_tail >= 0) slots[batch_tail].next = slot; else batch_head = slot;
    batch_tail = slot;
  }

  // Writes this batch's frames (slots, from batch_head) with one sendmsg()
  // (adjacent frames merged into one iovec), then what is queued with one
  // send(). Returns 0, or the errno of a write that failed (the caller closes
  // the peer). *queue_full: datagrams dropped as queue_full (counted here
  // for the peer, by the caller for the router). tx counts the datagrams
  // sent or queued. Afterwards the caller watches for EPOLLOUT while out_len
  // is not 0.
  int send(const BatchSlot* slots, uint32_t* queue_full);

  // The counters for Router::stats(), read from another thread; the caller
  // holds the loop's stats_mu (addr and offload are written under it).
  PeerStats stats() const;

 private:
  int send_batch(const BatchSlot* slots, uint32_t* queue_full);
  void compact() {
    memmove(out.get(), out.get() + out_head, out_len);
    out_head = 0;
  }
};

// Holding (RouterOptions::hold_us), to spread traffic: with many peers, each
// gets one or two frames per tun batch, and a write per frame (an skb and a
// wake-up of the peer's reader each) costs several times the rest of the
// path. While the tun still has a backlog, a peer's few frames wait in its
// queue (copied there) for later ones, until it has kHoldFrames or
// kHoldBytes, or the oldest has waited hold_ns, or the tun drains and it has
// waited a quarter of that (drain_ns): one write then carries them all.
// Light traffic is never held: a peer starts holding only at the end of a
// batch that left a backlog and went to kSpreadPeers peers or more (one
// vassal's flood does not hold its neighbours' packets). A drained tun is
// often not the end of the backlog on a shared machine (its sender lost the
// CPU for a moment); writing every hold then kept the router spinning
// through a thousand short writes (docs/scale.md). Frames count by their
// datagrams (a USO run of 64 is 64): a peer that gets a run a batch already
// has what holding would gather, and is not held (gathering 16 KB of runs
// would hand its reader hundreds of datagrams at once).
// A handed-over tun (one hop) takes one packet a write: the router holds it
// only while its datagrams may merge, and writes its queue as USO runs
// (router.cc, write_held_tun); its queue holds tun frames only while held.
class HoldList {
 public:
  static constexpr uint32_t kHoldFrames = 32;   // a peer stops waiting at this many datagrams
  static constexpr size_t kHoldBytes = 16384;   // or bytes: a write that carries them pays off
  static constexpr size_t kReleaseBatch = 64;   // held peers written per release()
  // A batch starts holds only if it was spread over this many peers: with
  // fewer, holding saves a write or two a batch, and would delay a
  // neighbour's few packets behind another vassal's flood.
  static constexpr size_t kSpreadPeers = 8;

  explicit HoldList(uint64_t hold_ns) : hold_ns_(hold_ns), drain_ns_(hold_ns / 4) {}

  // At the end of a tun batch: true if p's frames of this batch were moved
  // into its queue to wait (p is then not written). A peer starts holding
  // only if the batch left a backlog and was spread (kSpreadPeers); one
  // held already goes on after that until it has waited drain_ns.
  bool hold(Peer* p, const BatchSlot* slots, bool spread, uint64_t now);

  // A frame of segs datagrams was queued for p (behind what waits, or a
  // datagram joined a run there): counted if p is held.
  void queued(Peer* p, uint32_t segs = 1) {
    if (!p->held) return;
    p->held_frames += segs;
    frames_.add(segs);
  }

  // p is about to be written: what it held goes with this write.
  void writing(Peer* p) {
    if (!p->held) return;
    p->held = false;
    p->held_frames = 0;
    writes_.add(1);
  }

  // p is closed: it is no longer held.
  void forget(Peer* p);

  bool empty() const { return list_.empty(); }

  // When the oldest hold may be written if the tun stays drained (ns,
  // monotonic); 0 if none is held. A stale first entry only makes it early.
  uint64_t drain_due() const { return list_.empty() ? 0 : list_.front().since + drain_ns_; }

  // Writes held peers, oldest first, with write(p): those held for drain_ns
  // when the tun drained, else those held for hold_ns; at most kReleaseBatch
  // writes per call, so the loop reads the tun between them (a thousand
  // writes in a row would let the tun's queue overflow meanwhile). Peers
  // written since they were held, and dead ones, are skipped.
  template <class Write>
  void release(uint64_t now, bool drained, Write&& write) {
    const uint64_t age = drained ? drain_ns_ : hold_ns_;
    size_t writes = 0;
    while (!list_.empty() && writes < kReleaseBatch) {
      const Ref h = list_.front();
      const bool current = h.p->held && h.p->held_since == h.since;
      if (current && now - h.since < age) break;
      list_.pop_front();
      if (current && !h.p->dead) {
        write(h.p);
        writes++;
      }
    }
  }

  uint64_t frames() const { return frames_.get(); }  // frames held to share a write
  uint64_t writes() const { return writes_.get(); }  // writes that carried held frames

 private:
  // Peers with held frames, oldest hold first. An entry is current while its
  // peer is held since `since`; a peer written and held again leaves a stale
  // entry, skipped when reached.
  struct Ref {
    Peer* p;
    uint64_t since;
  };
  std::deque<Ref> list_;
  uint64_t hold_ns_;   // 0: never hold
  uint64_t drain_ns_;  // a hold a drained tun writes: a quarter of hold_ns
  Counter frames_, writes_;
};

}  // namespace moat
