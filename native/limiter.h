// limiter.h: a peer's rate limit in one direction, as a shaper: a bytes
// bucket and a packets bucket (token buckets, each with a burst) and a small
// bounded queue where a packet over the limit waits for its tokens instead
// of being dropped at once (a bare policer makes TCP collapse; issue 16).
//
// The buckets are deficit buckets: a packet passes while both hold at least
// 0 tokens and then takes its cost, so a bucket may go below 0 by one packet.
// That lets a packet larger than the burst (a 64 KiB super-packet) through
// without stalling, and keeps the long-term rate exact: tokens come at the
// rate, whatever the packet sizes. Refilled from the monotonic clock the
// caller passes (mono_clock.h, read once per wakeup): no syscall here.
//
// Limits: the queue holds at most 50 ms of traffic at the limited rate (of
// whichever bucket is limited; both: the smaller), but an empty queue always
// takes one packet; its buffer is allocated at the first packet that waits
// (never per packet) and is at most 2 x 50 ms of bytes + one 64 KiB frame
// (a packets-only limit: kPacketsOnlyBuffer). What does not fit is dropped
// (the caller counts it as rate_limit). A super-packet that does not fit,
// or is larger than the whole queue (over_budget), the router splits and
// its segments that fit wait (router.cc push_segments): so nothing waits
// much longer than 50 ms, a lone plain packet excepted.
// Packets leave in the order they came.
//
// Threads: the router's loop thread only. Syscalls: none.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace moat {

// One direction's limit. A rate of 0: that bucket is unlimited. A burst of
// 0: kDefaultBurstNs of its rate (at least kMinBurstBytes / one packet).
// A packet larger than the bytes burst still passes (on debt).
struct RateLimit {
  uint64_t bits_per_sec = 0;
  uint64_t packets_per_sec = 0;
  uint64_t burst_bytes = 0;
  uint64_t burst_packets = 0;
  bool any() const { return bits_per_sec != 0 || packets_per_sec != 0; }
  bool operator==(const RateLimit& o) const {
    return bits_per_sec == o.bits_per_sec && packets_per_sec == o.packets_per_sec &&
           burst_bytes == o.burst_bytes && burst_packets == o.burst_packets;
  }
};

// A token bucket: rate tokens per second up to burst; deficit semantics (above).
class TokenBucket {
 public:
  // rate 0: unlimited (ready() always true, take() free).
  void configure(double rate_per_sec, double burst, uint64_t now);
  bool limited() const { return per_ns_ > 0; }
  void refill(uint64_t now) {
    if (per_ns_ <= 0) return;
    if (now > last_) {
      tokens_ += double(now - last_) * per_ns_;
      if (tokens_ > burst_) tokens_ = burst_;
      last_ = now;
    }
  }
  bool ready() const { return per_ns_ <= 0 || tokens_ >= 0; }
  void take(double n) {
    if (per_ns_ > 0) tokens_ -= n;
  }
  // Nanoseconds until ready() after refill (0: ready now).
  uint64_t wait_ns() const;
  double tokens() const { return tokens_; }

 private:
  double per_ns_ = 0;   // tokens per nanosecond; 0: unlimited
  double burst_ = 0;
  double tokens_ = 0;
  uint64_t last_ = 0;
};

class Shaper {
 public:
  static constexpr uint64_t kDefaultBurstNs = 10000000;   // 10 ms of the rate
  static constexpr uint64_t kQueueNs = 50000000;          // the queue holds 50 ms of the rate
  // A default burst is at least one 8 KiB frame (uWSGI's); bigger packets
  // pass on debt (deficit buckets), so a larger floor would only add a
  // startup burst (at 1 Mbit/s, 64 KiB is half a second).
  static constexpr size_t kMinBurstBytes = 8192;
  static constexpr size_t kMaxPacket = 65535 + 16;        // one frame's payload, vnet header included
  static constexpr size_t kPacketsOnlyBuffer = 1 << 20;   // buffer of a packets-only limit
  static constexpr size_t kEntryHeader = 12;

  // A new limit: the buckets start full. Queued packets stay and leave at
  // the new rate; new ones wait only once the queue is within its new bound.
  void configure(const RateLimit& limit, uint64_t now);
  const RateLimit& limit() const { return limit_; }
  bool active() const { return limit_.any(); }
  bool empty() const { return count_ == 0; }

  // A packet of cost bytes (its IPv4 length) and segs packets (a
  // super-packet: its segments) may go now: true (tokens taken). False: it
  // must wait (push()) or be dropped. Never true while packets wait.
  bool pass(uint64_t now, size_t cost, uint32_t segs) {
    if (count_ != 0) return false;
    bytes_.refill(now);
    packets_.refill(now);
    if (!bytes_.ready() || !packets_.ready()) return false;
    bytes_.take(double(cost));
    packets_.take(double(segs));
    return true;
  }

  // Queues the frame payload (n bytes, modifier2 mod2); false: it does not
  // fit (the caller drops it as rate_limit).
  bool push(const uint8_t* payload, size_t n, uint8_t mod2, size_t cost, uint32_t segs);

  // Hands out, oldest first, the waiting packets the buckets allow now:
  // out(payload, n, mod2, cost, segs) for each (cost and segs as pushed).
  // Returns how many left.
  template <class Out>
  uint32_t release(uint64_t now, Out&& out) {
    uint32_t n = 0;
    bytes_.refill(now);
    packets_.refill(now);
    while (count_ != 0 && bytes_.ready() && packets_.ready()) {
      Entry e;
      const uint8_t* payload = front(&e);
      bytes_.take(double(e.cost));
      packets_.take(double(e.segs));
      out(payload, size_t(e.size), e.mod2, size_t(e.cost), uint32_t(e.segs));
      pop(e);
      n++;
    }
    return n;
  }

  // Whether a packet of this cost is more than the queue may hold at all
  // (push() still takes it into an empty queue: a packet cannot be split there).
  bool over_budget(size_t cost, uint32_t segs) const {
    return (budget_bytes_ != 0 && cost > budget_bytes_) || (budget_packets_ != 0 && segs > budget_packets_);
  }

  // When the first waiting packet may leave (0: nothing waits).
  uint64_t due(uint64_t now) const;

  size_t queued_bytes() const { return cost_; }  // the waiting packets' cost
  uint32_t queued_packets() const { return count_; }   // entries (a super-packet is one)
  uint64_t queued_segments() const { return segs_; }  // the packets they carry (the packets bucket's unit)

 private:
  struct Entry {
    uint32_t size;   // payload bytes that follow
    uint32_t cost;
    uint16_t segs;
    uint8_t mod2;
    uint8_t pad;
  };
  static_assert(sizeof(Entry) == kEntryHeader, "entry header");

  const uint8_t* front(Entry* e) const;
  void pop(const Entry& e);
  bool fits(size_t cost, uint32_t segs, size_t phys) const;

  RateLimit limit_;
  TokenBucket bytes_, packets_;
  size_t budget_bytes_ = 0;     // the queue's bound in cost bytes (0: none)
  uint32_t budget_packets_ = 0; // in packets (0: none)
  std::unique_ptr<uint8_t[]> buf_;
  size_t cap_ = 0, want_cap_ = 0;  // allocated; wanted by the current limit
  size_t head_ = 0, len_ = 0;      // entries are buf_[head_, head_ + len_)
  size_t cost_ = 0;
  uint64_t segs_ = 0;   // queued segments: the bound of a packets limit counts these
  uint32_t count_ = 0;
};

}  // namespace moat
