// peer.cc: a peer's writes and holding (see peer.h for the job, limits and
// syscalls). Runs on the router's loop thread only.
#include "peer.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>

#include "router.h"

namespace moat {
namespace {
constexpr int kMaxIov = 64;  // iovecs per sendmsg (adjacent frames merge)

bool transient(int e) { return e == EAGAIN || e == EWOULDBLOCK || e == EINTR; }
}  // namespace

Peer::Peer(uint32_t id_, int fd_, uint32_t uid_, uint32_t gid_, uint32_t pid_, size_t in_cap_, uint32_t send_max_,
           size_t queue_bytes)
    : id(id_), fd(fd_), send_max(send_max_), out(new uint8_t[queue_bytes ? queue_bytes : 1]), out_cap(queue_bytes),
      in(new uint8_t[in_cap_]), in_cap(in_cap_), uid(uid_), gid(gid_), pid(pid_) {}

// The batch's frames first, then the queue: a partial write keeps the rest
// queued (the caller waits for EPOLLOUT).
int Peer::send(const BatchSlot* slots, uint32_t* queue_full) {
  *queue_full = 0;
  if (batch_head >= 0) {
    const int e = send_batch(slots, queue_full);
    if (e != 0) return e;
  }
  if (out_len > 0) {
    const ssize_t n = ::send(fd, out.get() + out_head, out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (!transient(errno)) return errno;
    } else {
      tx_bytes.add(uint64_t(n));
      out_head += size_t(n);
      out_len -= size_t(n);
      if (out_len == 0) out_head = 0;
    }
    queued.set(out_len);
  }
  return 0;
}

// One sendmsg() of the batch's frames. What the socket does not take is
// copied into the queue: the rest of a frame cut in the middle always (it
// fits: the queue is empty and a frame never exceeds out_cap), then whole
// frames while they fit, the others dropped as queue_full.
int Peer::send_batch(const BatchSlot* slots, uint32_t* queue_full) {
  struct iovec iov[kMaxIov];
  int n = 0;
  for (int32_t s = batch_head; s >= 0; s = slots[s].next) {
    const BatchSlot& sl = slots[s];
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
  ssize_t sent = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (sent < 0) {
    if (!transient(errno)) return errno;
    sent = 0;
  }
  tx_bytes.add(uint64_t(sent));
  size_t skip = size_t(sent);
  uint64_t kept = 0, ip_packets = 0, ip_bytes = 0;
  for (int32_t s = batch_head; s >= 0; s = slots[s].next) {
    const BatchSlot& sl = slots[s];
    if (skip >= sl.len) {
      skip -= sl.len;
      kept += sl.segs;
      ip_packets += sl.ip_packets;
      ip_bytes += sl.ip_bytes;
      continue;
    }
    if (skip > 0 || out_len + sl.len <= out_cap) {
      append(sl.ptr + skip, sl.len - skip);
      kept += sl.segs;
      ip_packets += sl.ip_packets;
      ip_bytes += sl.ip_bytes;
    } else {
      drops[int(Drop::QueueFull)].add(sl.segs);
      *queue_full += sl.segs;
    }
    skip = 0;
  }
  tx.add(kept);
  count_in(ip_packets, ip_bytes);
  return 0;
}

PeerStats Peer::stats() const {
  PeerStats s;
  s.id = id;
  s.addr = addr;
  s.uid = uid;
  s.gid = gid;
  s.pid = pid;
  s.tx = tx.get();
  s.rx = rx.get();
  s.tx_bytes = tx_bytes.get();
  s.rx_bytes = rx_bytes.get();
  s.dropped = 0;
  for (int i = 0; i < kDropCount; i++) {
    s.drops[i] = drops[i].get();
    s.dropped += s.drops[i];
  }
  s.queued = queued.get();
  s.offload = offload;
  s.handoff = tun_fd >= 0;
  s.vnet_rx = vnet_rx.get();
  s.gso_rx = gso_rx.get();
  s.vnet_tx = vnet_tx.get();
  s.gso_tx = gso_tx.get();
  s.uso_tx = uso_tx.get();
  s.sndbuf_grown = sndbuf_grown.get();
  s.shaped_in = shaped_in.get();
  s.shaped_out = shaped_out.get();
  s.shape_queued_in = shape_queued_in.get();
  s.shape_queued_out = shape_queued_out.get();
  s.shape_peak_in = shape_peak_in.get();
  s.shape_peak_out = shape_peak_out.get();
  s.ip_packets_in = ip_packets_in.get();
  s.ip_packets_out = ip_packets_out.get();
  s.ip_bytes_in = ip_bytes_in.get();
  s.ip_bytes_out = ip_bytes_out.get();
  return s;
}

bool HoldList::hold(Peer* p, const BatchSlot* slots, bool spread, uint64_t now) {
  if (hold_ns_ == 0 || p->want_out) return false;
  if (!spread && !(p->held && now - p->held_since < drain_ns_)) return false;
  uint32_t frames = p->held_frames;  // counted by queued() as they were queued
  size_t bytes = p->out_len;
  for (int32_t s = p->batch_head; s >= 0; s = slots[s].next) {
    frames += slots[s].segs;
    bytes += slots[s].len;
  }
  if (frames >= kHoldFrames || bytes > kHoldBytes || bytes > p->out_cap) return false;
  for (int32_t s = p->batch_head; s >= 0; s = slots[s].next) {
    p->append(slots[s].ptr, slots[s].len);
    p->tx.add(slots[s].segs);
    p->count_in(slots[s].ip_packets, slots[s].ip_bytes);
  }
  frames_.add(frames - p->held_frames);
  p->held_frames = frames;
  p->batch_head = p->batch_tail = -1;
  if (!p->held) {
    p->held = true;
    p->held_since = now;
    list_.push_back(Ref{p, now});
  }
  return true;
}

void HoldList::forget(Peer* p) {
  p->held = false;
  list_.erase(std::remove_if(list_.begin(), list_.end(), [p](const Ref& h) { return h.p == p; }), list_.end());
}

}  // namespace moat
