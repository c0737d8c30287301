// peer.h: one vassal connection as the router's loop sees it: its socket, its
// credentials, its address, an input buffer that reassembles frames, a bounded
// outbound byte queue, and its counters.
//
// Ownership: only the loop thread mutates a Peer. Counters are relaxed atomics
// written by that one thread (a plain load + store, no locked instruction), so
// stats() may read them from another thread while the peer is listed.
// Limits: the input buffer holds max(max_frame + 4, 64 KiB) bytes; the outbound
// queue holds at most queue_bytes; both are allocated once, at accept.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

#include "counter.h"
#include "drops.h"
#include "frame.h"

namespace moat {


struct Peer {
  uint32_t id = 0;
  int fd = -1;
  uint32_t uid = 0, gid = 0, pid = 0;
  uint32_t addr = 0;       // 0 until learned (0.0.0.0 is never a peer address)
  bool dead = false;       // closed, waiting to be freed at the end of the wakeup
  bool dirty = false;      // has queued bytes to flush after this batch
  bool want_out = false;   // EPOLLOUT registered (a write was partial)
  // Largest packet this peer can read in one frame. uWSGI's device reads into
  // 8192-byte buffers (8188 of payload); set from the router's max_frame at
  // accept (configuration; a later negotiation may raise it per peer). Bigger
  // packets get ICMP fragmentation-needed (DF) or are fragmented.
  uint32_t send_max = 8188;
  // Offloads negotiated (offload.h): the peer sent a valid hello and got
  // ours; it then takes kModVnet frames of up to 65535 bytes and may send
  // them. caps: what its hello said it takes. Written under stats_mu.
  bool offload = false;
  uint16_t caps = 0;
  // This tun batch's frames for the peer, in the router's batch arena (slot
  // indexes; -1: none). Only the loop's down path uses them.
  int32_t batch_head = -1, batch_tail = -1;
  // Held (router.cc, hold()): frames wait in the queue, not yet written, so
  // that one write carries several; held_frames counts them, held_since is
  // when the first was held.
  bool held = false;
  uint32_t held_frames = 0;
  uint64_t held_since = 0;

  // Input: bytes read from the socket, not yet a whole frame at the front.
  std::unique_ptr<uint8_t[]> in;
  size_t in_cap = 0;
  size_t in_len = 0;

  // Output: queued frames are out[out_head, out_head + out_len).
  std::unique_ptr<uint8_t[]> out;
  size_t out_cap = 0;
  size_t out_head = 0;
  size_t out_len = 0;

  // Rate limiting of 'refused' events: per reason, the time of the last event,
  // the drops since, and the last address refused.
  uint64_t refused_at[kDropCount] = {};
  uint64_t refused_count[kDropCount] = {};
  uint32_t refused_addr[kDropCount] = {};

  Counter tx, rx, tx_bytes, rx_bytes, queued;
  // kModVnet frames received / sent, and those that were GSO super-packets.
  Counter vnet_rx, gso_rx, vnet_tx, gso_tx;
  Counter uso_tx;  // kModVnet frames that are runs of datagrams merged here (coalesce.h)
  Counter drops[kDropCount];

  // Appends one frame (header + packet) to the outbound queue; false if the
  // queue cannot take it. Compacts the queue when the tail has no room.
  bool enqueue(const uint8_t* pkt, size_t len, uint8_t mod2 = kModPacket) {
    const size_t need = kFrameHeaderSize + len;
    if (out_len + need > out_cap) return false;
    if (out_head + out_len + need > out_cap) {
      memmove(out.get(), out.get() + out_head, out_len);
      out_head = 0;
    }
    uint8_t* p = out.get() + out_head + out_len;
    encode_frame_header(p, static_cast<uint16_t>(len), mod2);
    memcpy(p + kFrameHeaderSize, pkt, len);
    out_len += need;
    return true;
  }

  // Appends raw bytes (the unsent rest of a batch) to the queue; the caller
  // checked that they fit.
  void append(const uint8_t* p, size_t n) {
    if (out_head + out_len + n > out_cap) {
      memmove(out.get(), out.get() + out_head, out_len);
      out_head = 0;
    }
    memcpy(out.get() + out_head + out_len, p, n);
    out_len += n;
  }

  // Removes n flushed bytes from the front of the queue.
  void consumed(size_t n) {
    out_head += n;
    out_len -= n;
    if (out_len == 0) out_head = 0;
  }
};

}  // namespace moat
