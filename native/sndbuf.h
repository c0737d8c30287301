// sndbuf.h: the send buffer of a router<->device connection.
//
// The kernel's default (net.core.wmem_default, ~208 KB) holds three 64 KB
// offload frames, so the sender fills it and waits for the reader every few
// frames, and the two wake each other constantly. 4 MiB lets them run apart:
// TCP through moat +20-25% on the bench (docs/scale.md). The device asks it
// by default; the router gives it to peers that stream (SndbufGrowth below)
// or to every peer when configured (tuntap-device-sndbuf,
// tuntap-router-sndbuf, tuntap-router-sndbuf-busy in src/config/options-table.ts). The buffer is
// only memory while frames wait in it: it bounds what a peer that stops
// reading can pin in the kernel (on top of the router's own queue).
// SO_SNDBUFFORCE needs CAP_NET_ADMIN; without it SO_SNDBUF applies, capped
// by net.core.wmem_max (the router process of `moat emperor` runs without
// capabilities: raise wmem_max for it, docs/scale.md).
#pragma once
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstdint>

#include "counter.h"

namespace moat {

// 0: the kernel's default. Failure is not an error: the default stays.
inline void set_sndbuf(int fd, uint32_t bytes) {
  if (bytes == 0) return;
  const int v = int(bytes);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) != 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
}

// The send buffer the kernel keeps for fd now (twice what was asked); 0 on failure.
inline uint32_t sndbuf_of(int fd) {
  int v = 0;
  socklen_t n = sizeof v;
  return getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &n) == 0 && v > 0 ? uint32_t(v) : 0;
}

// Bytes written to fd that its reader has not read yet (SIOCOUTQ); -1 on failure.
inline int64_t unread_bytes(int fd) {
  int v = 0;
  return ioctl(fd, SIOCOUTQ, &v) == 0 ? int64_t(v) : -1;
}

// Growing the send buffer of a peer that streams (the router's
// tuntap-router-sndbuf-busy and -budget).
//
// Why: with the kernel's default (~208 KB, three 64 KB offload frames) a
// TCP stream toward a vassal made the router wait for the vassal's reader
// every few frames: 7.0-7.6 Gbit/s gateway->vassal on the bench, 10.4-11.6
// with 0.5-2 MiB (docs/scale.md). A large buffer for every peer would let
// each vassal that stops reading pin that much of the host's memory, so a
// peer gets one only once it has shown it reads: its buffer filled (a
// partial write) and drained again (EPOLLOUT). A peer that never reads
// never grows. The growth comes from a budget shared by all peers; a peer
// idle for kIdleNs with nothing left unread gives it back.
// Threads: the loop thread; the counters may be read from any thread.
class SndbufGrowth {
 public:
  static constexpr uint64_t kIdleNs = 5ull * 1000 * 1000 * 1000;

  // busy: bytes asked for a streaming peer's buffer (0: never grow);
  // budget: the most the growths may add up to, bytes as the kernel keeps them.
  void configure(uint32_t busy, uint64_t budget) {
    busy_ = busy;
    budget_ = budget;
  }

  // fd's buffer drained after it filled: grows it if the budget allows.
  // Returns the bytes added (0: not grown); *base: its size before.
  uint32_t grow(int fd, uint32_t* base) {
    if (busy_ == 0) return 0;
    const uint32_t before = sndbuf_of(fd);
    const uint64_t want = uint64_t(busy_) * 2;  // what the kernel will keep
    if (before == 0 || want <= before || used_.get() + (want - before) > budget_) return 0;
    set_sndbuf(fd, busy_);
    const uint32_t after = sndbuf_of(fd);
    if (after <= before) return 0;  // capped (net.core.wmem_max without CAP_NET_ADMIN) at no more
    *base = before;
    used_.add(after - before);
    peers_.add(1);
    grows_.add(1);
    return after - before;
  }

  // Whether a grown peer (last drained at full_at) may give its growth back:
  // idle long enough, nothing waiting in moat's queue or the kernel's beyond base.
  static bool idle(int fd, uint64_t now, uint64_t full_at, size_t queued, uint32_t base) {
    if (now - full_at < kIdleNs || queued != 0) return false;
    const int64_t unread = unread_bytes(fd);
    return unread >= 0 && unread <= int64_t(base);
  }

  // Sets fd's buffer back to base (a size sndbuf_of returned) and returns
  // extra to the budget.
  void shrink(int fd, uint32_t base, uint32_t extra) {
    const int v = int(base / 2);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) != 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    release(extra);
  }

  // A grown peer closed: its growth goes back to the budget.
  void release(uint32_t extra) {
    used_.set(used_.get() - extra);
    peers_.set(peers_.get() - 1);
  }

  uint64_t used() const { return used_.get(); }
  uint64_t peers() const { return peers_.get(); }
  uint64_t grows() const { return grows_.get(); }

 private:
  uint32_t busy_ = 0;
  uint64_t budget_ = 0;
  Counter used_, peers_, grows_;
};

}  // namespace moat
