// limiter.cc: token buckets and the shaper's queue (see limiter.h for the
// job, limits and threads). Syscalls: none.
#include "limiter.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace moat {

void TokenBucket::configure(double rate_per_sec, double burst, uint64_t now) {
  per_ns_ = rate_per_sec / 1e9;
  burst_ = burst;
  tokens_ = burst;
  last_ = now;
}

uint64_t TokenBucket::wait_ns() const {
  if (per_ns_ <= 0 || tokens_ >= 0) return 0;
  return uint64_t(std::ceil(-tokens_ / per_ns_));
}

void Shaper::configure(const RateLimit& limit, uint64_t now) {
  limit_ = limit;
  const double bytes_per_sec = double(limit.bits_per_sec) / 8;
  const double pps = double(limit.packets_per_sec);
  double burst_bytes = double(limit.burst_bytes);
  if (burst_bytes == 0) burst_bytes = std::max(bytes_per_sec * kDefaultBurstNs / 1e9, double(kMinBurstBytes));
  double burst_packets = double(limit.burst_packets);
  if (burst_packets == 0) burst_packets = std::max(pps * kDefaultBurstNs / 1e9, 1.0);
  bytes_.configure(bytes_per_sec, burst_bytes, now);
  packets_.configure(pps, burst_packets, now);
  budget_bytes_ = bytes_per_sec > 0 ? size_t(bytes_per_sec * kQueueNs / 1e9) : 0;
  budget_packets_ = pps > 0 ? uint32_t(std::max(pps * kQueueNs / 1e9, 1.0)) : 0;
  // Room for the cost budget twice over (small packets carry a 12-byte entry
  // header and a 20-byte cost at least) and one largest frame; a
  // packets-only limit gets a fixed buffer.
  if (budget_bytes_ != 0) want_cap_ = 2 * budget_bytes_ + kMaxPacket + kEntryHeader;
  else want_cap_ = std::max(kPacketsOnlyBuffer, kMaxPacket + kEntryHeader);
}

uint64_t Shaper::due(uint64_t now) const {
  if (count_ == 0) return 0;
  // The buckets as they will be at now (refill is not const: compute).
  return now + std::max(bytes_.wait_ns(), packets_.wait_ns());
}

bool Shaper::fits(size_t cost, uint32_t segs, size_t phys) const {
  if (phys > cap_ - len_) return false;
  if (count_ == 0) return true;  // an empty queue takes one packet whatever its size
  if (budget_bytes_ != 0 && cost_ + cost > budget_bytes_) return false;
  if (budget_packets_ != 0 && segs_ + segs > budget_packets_) return false;
  return true;
}

bool Shaper::push(const uint8_t* payload, size_t n, uint8_t mod2, size_t cost, uint32_t segs) {
  if (n > kMaxPacket) return false;
  if (count_ == 0 && cap_ != want_cap_) {
    // First wait under this limit: the buffer is (re)made now, once.
    buf_.reset(new uint8_t[want_cap_]);
    cap_ = want_cap_;
    head_ = len_ = 0;
  }
  const size_t phys = kEntryHeader + n;
  if (!fits(cost, segs, phys)) return false;
  if (head_ + len_ + phys > cap_) {
    memmove(buf_.get(), buf_.get() + head_, len_);
    head_ = 0;
  }
  Entry e;
  e.size = uint32_t(n);
  e.cost = uint32_t(cost);
  e.segs = uint16_t(std::min<uint32_t>(segs, 0xffff));
  e.mod2 = mod2;
  e.pad = 0;
  uint8_t* p = buf_.get() + head_ + len_;
  memcpy(p, &e, sizeof e);
  memcpy(p + kEntryHeader, payload, n);
  len_ += phys;
  cost_ += cost;
  segs_ += e.segs;
  count_++;
  return true;
}

const uint8_t* Shaper::front(Entry* e) const {
  const uint8_t* p = buf_.get() + head_;
  memcpy(e, p, sizeof *e);
  return p + kEntryHeader;
}

void Shaper::pop(const Entry& e) {
  const size_t phys = kEntryHeader + e.size;
  head_ += phys;
  len_ -= phys;
  cost_ -= e.cost;
  segs_ -= e.segs;
  count_--;
  if (count_ == 0) head_ = len_ = 0;
}

}  // namespace moat
