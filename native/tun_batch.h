// tun_batch.h: reading several packets from a tun device in one system call
// (io_uring), for the router's down path.
//
// Why: a tun device has no multi-packet read, so a flood costs one read()
// per packet, and on a VM a system call's entry and exit are dear: on the
// test VM (a PVM guest) a 64-byte packet cost 1.5 µs through read() and
// 0.23-0.41 through io_uring reads submitted 16-64 at a time
// (docs/rates.md). Each read is a READ with RWF_NOWAIT: it completes inside
// io_uring_enter() with a packet or -EAGAIN, never waits in the kernel, so
// no read is left pending between calls (a pending read would take a packet
// at some later time into a buffer the caller has moved on from).
//
// Buffers: `slots` of `slot_size` bytes (a maximum-size packet each: a tun
// read into a shorter buffer loses the packet), allocated once and touched
// only as packets land in them.
//
// Where io_uring is missing or refused (an old kernel, kernel.io_uring_disabled,
// a seccomp filter) init() fails and the caller reads with read(); so does a
// kernel whose tun refuses RWF_NOWAIT, or any failure of io_uring itself
// (ready() turns false for good).
// Writes: the router also writes a wakeup's packets for handed-over vassal
// tuns through the same ring (write_add, write_submit): one system call for
// up to `slots` tuns instead of one each (docs/one-hop.md, "Many
// vassals"), each a WRITEV with RWF_NOWAIT, so none is left pending either;
// where io_uring fails they go out with writev().
// Threads: the caller's loop thread only. Syscalls: io_uring_setup,
// io_uring_enter, mmap, munmap, close, writev (tun_write).
#pragma once
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "tun.h"

namespace moat {

class TunBatch {
 public:
  TunBatch() = default;
  TunBatch(const TunBatch&) = delete;
  TunBatch& operator=(const TunBatch&) = delete;
  ~TunBatch() { close_ring(); }

  // false: io_uring is not available here, or MOAT_TUN_BATCH=0 in the
  // environment (the caller uses read()).
  bool init(int tun_fd, unsigned slots, size_t slot_size) {
    const char* env = getenv("MOAT_TUN_BATCH");
    if (env && strcmp(env, "0") == 0) return false;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    const int fd = int(syscall(__NR_io_uring_setup, slots, &p));
    if (fd < 0) return false;
    ring_fd_ = fd;
    sq_len_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    cq_len_ = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (p.features & IORING_FEAT_SINGLE_MMAP) sq_len_ = cq_len_ = std::max(sq_len_, cq_len_);
    sq_ = map(sq_len_, IORING_OFF_SQ_RING);
    cq_ = (p.features & IORING_FEAT_SINGLE_MMAP) ? sq_ : map(cq_len_, IORING_OFF_CQ_RING);
    sqes_len_ = p.sq_entries * sizeof(struct io_uring_sqe);
    sqes_ = static_cast<struct io_uring_sqe*>(map(sqes_len_, IORING_OFF_SQES));
    if (!sq_ || !cq_ || !sqes_ || p.sq_entries < slots) {
      close_ring();
      return false;
    }
    char* sq = static_cast<char*>(sq_);
    char* cq = static_cast<char*>(cq_);
    sq_tail_ = reinterpret_cast<unsigned*>(sq + p.sq_off.tail);
    sq_mask_ = *reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
    sq_array_ = reinterpret_cast<unsigned*>(sq + p.sq_off.array);
    cq_head_ = reinterpret_cast<unsigned*>(cq + p.cq_off.head);
    cq_tail_ = reinterpret_cast<unsigned*>(cq + p.cq_off.tail);
    cq_mask_ = *reinterpret_cast<unsigned*>(cq + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<struct io_uring_cqe*>(cq + p.cq_off.cqes);
    tun_ = tun_fd;
    slots_ = slots;
    slot_size_ = slot_size;
    buf_.reset(new uint8_t[size_t(slots) * slot_size]);  // pages touched as packets land
    res_.assign(slots, 0);
    writes_.assign(slots, QueuedWrite{});
    return true;
  }

  // false once the kernel refused a READ with RWF_NOWAIT on the tun or
  // io_uring failed: read() from then on.
  bool ready() const { return ring_fd_ >= 0 && !disabled_; }

  // Tries n reads (1..slots) at once. Returns how many were tried; 0 on a
  // failure of io_uring itself, after which ready() is false for good and
  // the caller reads with read().
  // Afterwards result(i) for i < n is the packet's length, or -errno
  // (-EAGAIN: nothing was queued at that moment).
  unsigned read(unsigned n) { return read_from(tun_, n); }

  // The same from another tun (the router reads handed-over vassal tuns
  // through its own ring, into the same slots: one ring for all of them).
  unsigned read_from(int fd, unsigned n) { return read_each(nullptr, fd, n); }

  // The same with read i from fds[i] (the queues of a multi-queue tun, in
  // one call), or from fd when fds is null.
  unsigned read_each(const int* fds, int fd, unsigned n) {
    if (n == 0 || n > slots_ || !ready()) return 0;
    for (unsigned i = 0; i < n; i++) res_[i] = -EAGAIN;
    const bool ok = submit(n, [&](struct io_uring_sqe* e, unsigned i) {
      e->opcode = IORING_OP_READ;
      e->fd = fds ? fds[i] : fd;
      e->addr = uint64_t(reinterpret_cast<uintptr_t>(slot(i)));
      e->len = uint32_t(slot_size_);
    }, [&](unsigned i, int res) { res_[i] = res; });
    // A read left pending would fill a slot later: never again (submit).
    return ok ? n : 0;
  }

  // Queues a write of pkt (after a zero virtio-net header when zero_hdr) to
  // fd; pkt must stay where it is until write_submit(). Returns the write's
  // index, or -1 when the ring is full (submit first) or not usable (write
  // it yourself).
  int write_add(int fd, const uint8_t* pkt, size_t len, bool zero_hdr) {
    if (!ready() || wn_ >= slots_) return -1;
    QueuedWrite& w = writes_[wn_];
    w.fd = fd;
    w.zero = zero_hdr;
    w.iov[0] = {const_cast<uint8_t*>(kZeroVnetHdr), kVnetHdrLen};
    w.iov[1] = {const_cast<uint8_t*>(pkt), len};
    return int(wn_++);
  }
  unsigned writes_queued() const { return wn_; }

  // Sends the queued writes in one io_uring_enter (tun_write() each that
  // io_uring did not complete or cannot do). Afterwards write_ok(i) for
  // i < the count returned says whether write i went out whole; the queue
  // is empty again.
  unsigned write_submit() {
    const unsigned n = wn_;
    wn_ = 0;
    for (unsigned i = 0; i < n; i++) writes_[i].done = false;
    if (n > 0 && ready()) {
      submit(n, [&](struct io_uring_sqe* e, unsigned i) {
        const QueuedWrite& w = writes_[i];
        e->opcode = IORING_OP_WRITEV;
        e->fd = w.fd;
        e->addr = uint64_t(reinterpret_cast<uintptr_t>(w.zero ? &w.iov[0] : &w.iov[1]));
        e->len = w.zero ? 2 : 1;
      }, [&](unsigned i, int res) {
        if (res == -EOPNOTSUPP || res == -EINVAL) return;  // io_uring cannot: tun_write below
        QueuedWrite& w = writes_[i];
        w.done = true;
        w.ok = res >= 0 && size_t(res) == (w.zero ? kVnetHdrLen : 0) + w.iov[1].iov_len;
      });
    }
    for (unsigned i = 0; i < n; i++) {
      QueuedWrite& w = writes_[i];
      if (!w.done) w.ok = tun_write(w.fd, static_cast<const uint8_t*>(w.iov[1].iov_base), w.iov[1].iov_len, w.zero);
    }
    return n;
  }
  bool write_ok(unsigned i) const { return writes_[i].ok; }

  int result(unsigned i) const { return res_[i]; }
  // A result that carries no packet: the tun was empty at that moment.
  static bool empty(int r) { return r == -EAGAIN || r == -EWOULDBLOCK || r == 0; }
  uint8_t* slot(unsigned i) { return buf_.get() + size_t(i) * slot_size_; }
  unsigned slots() const { return slots_; }

  // ---- the batching policy, the same for the router and the device ----
  // A lone ping should cost one read and a flood `slots` a call; packets of
  // TCP with offloads (up to 64 KB) are better read() in place, one copy less.

  // Read this wakeup in batches: io_uring works and the last wakeup's
  // packets were small (mean at most kSmallMax bytes).
  bool wanted() const { return ready() && small_; }
  // Reads to try in the next call: what the last wakeup found to begin
  // with, doubling while every read finds a packet; at most `room`.
  unsigned next(size_t room) const { return unsigned(std::min<size_t>(next_, room)); }
  // After a call: `drained` if one of its reads found nothing, `packets`
  // found in this wakeup so far.
  void after_call(bool drained, size_t packets) { next_ = next_after(next_, drained, packets, slots_); }
  // The policy itself, for a caller that keeps its own count (the router, one
  // per handed-over tun): what a drained call found, else twice as many.
  static unsigned next_after(unsigned next, bool drained, size_t packets, unsigned most) {
    return drained ? unsigned(std::clamp<size_t>(packets, 1, most)) : std::min(most, next * 2);
  }
  // At the end of every wakeup, batched or not.
  void after_wakeup(size_t packets, size_t bytes) { small_ = packets == 0 || bytes / packets <= kSmallMax; }

  static constexpr size_t kSmallMax = 16384;

 private:
  // n requests on a tun (fill sets the opcode, fd, buffer), each at no
  // offset with RWF_NOWAIT, submitted in one io_uring_enter that waits for
  // all n; done(i, res) for each completion. false when io_uring failed or
  // did not complete all n (a request left pending could complete into a
  // buffer the caller has moved on from): disabled_ then, for good.
  template <typename Fill, typename Done>
  bool submit(unsigned n, Fill fill, Done done) {
    const unsigned tail = *sq_tail_;
    for (unsigned i = 0; i < n; i++) {
      const unsigned idx = (tail + i) & sq_mask_;
      struct io_uring_sqe* e = &sqes_[idx];
      memset(e, 0, sizeof *e);
      fill(e, i);
      e->off = uint64_t(-1);  // a character device: no offset
      e->rw_flags = RWF_NOWAIT;
      e->user_data = i;
      sq_array_[idx] = idx;
    }
    __atomic_store_n(sq_tail_, tail + n, __ATOMIC_RELEASE);
    int r;
    do {
      r = int(syscall(__NR_io_uring_enter, ring_fd_, n, n, IORING_ENTER_GETEVENTS, nullptr, 0));
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      disabled_ = true;  // nothing submitted, nothing known: never again
      return false;
    }
    unsigned head = *cq_head_, seen = 0;
    const unsigned ctail = __atomic_load_n(cq_tail_, __ATOMIC_ACQUIRE);
    for (; head != ctail; head++) {
      const struct io_uring_cqe& c = cqes_[head & cq_mask_];
      if (c.user_data < n) done(unsigned(c.user_data), c.res);
      if (c.res == -EOPNOTSUPP || c.res == -EINVAL) disabled_ = true;
      seen++;
    }
    __atomic_store_n(cq_head_, head, __ATOMIC_RELEASE);
    if (seen != n) disabled_ = true;
    return !disabled_;
  }

  void* map(size_t len, off_t off) {
    void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd_, off);
    return m == MAP_FAILED ? nullptr : m;
  }

  void close_ring() {
    if (sqes_) munmap(sqes_, sqes_len_);
    if (cq_ && cq_ != sq_) munmap(cq_, cq_len_);
    if (sq_) munmap(sq_, sq_len_);
    sqes_ = nullptr;
    sq_ = cq_ = nullptr;
    if (ring_fd_ >= 0) close(ring_fd_);
    ring_fd_ = -1;
  }

  int ring_fd_ = -1, tun_ = -1;
  void *sq_ = nullptr, *cq_ = nullptr;
  size_t sq_len_ = 0, cq_len_ = 0, sqes_len_ = 0;
  struct io_uring_sqe* sqes_ = nullptr;
  unsigned *sq_tail_ = nullptr, *sq_array_ = nullptr, *cq_head_ = nullptr, *cq_tail_ = nullptr;
  unsigned sq_mask_ = 0, cq_mask_ = 0;
  struct io_uring_cqe* cqes_ = nullptr;
  unsigned slots_ = 0;
  size_t slot_size_ = 0;
  std::unique_ptr<uint8_t[]> buf_;
  std::vector<int> res_;
  // A queued write: its iovecs are a zero virtio-net header and the
  // packet, the first skipped unless zero; done once io_uring completed it.
  struct QueuedWrite {
    int fd = -1;
    bool zero = false, done = false, ok = false;
    iovec iov[2] = {};
  };
  std::vector<QueuedWrite> writes_;  // slots_ of them, never resized: iov stays put
  unsigned wn_ = 0;                  // writes queued
  bool disabled_ = false;
  unsigned next_ = 1;   // reads to try in the next call
  bool small_ = true;   // the last wakeup's packets were small
};

}  // namespace moat
