// conntrack.cc: the connection table (see conntrack.h for its job and limits).
#include "conntrack.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <random>

namespace moat {
namespace {

constexpr uint64_t kSecondNs = 1000000000ull;
constexpr uint64_t kReclaimEvery = 100000000ull;  // a full sweep when at a quota: at most every 100 ms

enum Kind : uint8_t { kNone = 0, kTcp, kUdp, kEcho, kOther, kError };
enum Tcp : uint8_t { kSynSent = 0, kSynRecv, kEstablished, kFinWait, kCloseWait, kLastAck, kTimeWait, kClose };
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;
constexpr uint8_t kReplied = 0x01, kFinByReply = 0x02;

inline uint16_t be16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }
inline uint32_t be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }

bool icmp_is_error(uint8_t t) { return t == 3 || t == 4 || t == 5 || t == 11 || t == 12; }

// The flow key of an IPv4 packet at ip (len bytes, a quoted one may be cut
// after 8 bytes of transport header). false: no ports where needed.
bool tuple_of(const uint8_t* ip, size_t len, CtLookup* l, uint8_t* icmp_type) {
  if (len < 20) return false;
  const size_t ihl = size_t(ip[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > len) return false;
  l->src = be32(ip + 12);
  l->dst = be32(ip + 16);
  l->proto = ip[9];
  l->sport = l->dport = 0;
  if (((unsigned(ip[6]) & 0x1f) << 8 | ip[7]) != 0) return false;  // a non-first fragment
  const uint8_t* l4 = ip + ihl;
  const size_t l4len = len - ihl;
  if (l->proto == 6 || l->proto == 17) {
    if (l4len < 8) return false;
    l->sport = be16(l4);
    l->dport = be16(l4 + 2);
  } else if (l->proto == 1) {
    if (l4len < 8) return false;
    *icmp_type = l4[0];
    if (l4[0] == 8 || l4[0] == 0) l->sport = l->dport = be16(l4 + 4);  // echo: by its id
  }
  return true;
}

}  // namespace

struct Conntrack::Entry {
  uint32_t a, b;
  uint16_t ap, bp;
  uint8_t proto;
  uint8_t used;    // holds a flow
  uint8_t orig_a;  // side a opened it
  uint8_t flags;   // kReplied, kFinByReply
  uint8_t tcp;     // Tcp state (tcp only)
  uint8_t kind;
  uint16_t pad;
  uint32_t vassal;
  uint64_t expires;  // ns, mono clock
};

size_t Conntrack::slot_bytes() { return sizeof(Entry); }

size_t Conntrack::slots_for(uint32_t max) {
  const size_t want = size_t(max) + size_t(max) / 2 + 1;
  size_t cap = 16;
  while (cap < want) cap <<= 1;
  return cap;
}

Conntrack::Conntrack(const ConntrackConfig& c) : cfg_(c) {
  static_assert(sizeof(Entry) == 32, "a conntrack entry is 32 bytes");
  cap_ = slots_for(c.max);
  mask_ = cap_ - 1;
  slots_ = static_cast<Entry*>(calloc(cap_, sizeof(Entry)));
  if (!slots_) throw std::bad_alloc();
  std::random_device rd;
  seed_ = (uint64_t(rd()) << 32) ^ rd();
  per_vassal_.reserve(1024);
}

Conntrack::~Conntrack() { free(slots_); }

Conntrack::Key Conntrack::key_of(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, uint8_t proto, bool* src_is_a) {
  *src_is_a = src < dst || (src == dst && sport <= dport);
  if (*src_is_a) return Key{src, dst, sport, dport, proto};
  return Key{dst, src, dport, sport, proto};
}

size_t Conntrack::hash(const Key& k) const {
  uint64_t h = seed_ ^ (uint64_t(k.a) << 32 | k.b);
  h ^= (uint64_t(k.ap) << 24 | uint64_t(k.bp) << 8 | k.proto) * 0x9e3779b97f4a7c15ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return size_t(h);
}

// The slot holding k, or -1; an expired entry met on the way is removed.
int64_t Conntrack::find(const Key& k, uint64_t now) {
  size_t i = hash(k) & mask_;
  for (size_t n = 0; n < cap_; n++) {
    Entry& e = slots_[i];
    if (!e.used) return -1;
    if (e.a == k.a && e.b == k.b && e.ap == k.ap && e.bp == k.bp && e.proto == k.proto) {
      if (e.expires > now) return int64_t(i);
      erase(i);
      return -1;
    }
    i = (i + 1) & mask_;
  }
  return -1;
}

// Backward-shift deletion: later entries of the same run move up, so a
// lookup can stop at the first empty slot.
void Conntrack::erase(size_t i) {
  Entry& gone = slots_[i];
  auto it = per_vassal_.find(gone.vassal);
  if (it != per_vassal_.end() && --it->second == 0) per_vassal_.erase(it);
  count_--;
  size_t hole = i;
  size_t j = (i + 1) & mask_;
  for (;;) {
    Entry& e = slots_[j];
    if (!e.used) break;
    const size_t home = hash(Key{e.a, e.b, e.ap, e.bp, e.proto}) & mask_;
    // e may move to the hole when its home is not in (hole, j] cyclically.
    const bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!stays) {
      slots_[hole] = e;
      hole = j;
    }
    j = (j + 1) & mask_;
  }
  memset(&slots_[hole], 0, sizeof(Entry));
}

uint64_t Conntrack::timeout_ns(const Entry& e) const {
  uint32_t s = cfg_.generic;
  switch (e.kind) {
    case kTcp:
      switch (e.tcp) {
        case kSynSent: s = cfg_.tcp_syn_sent; break;
        case kSynRecv: s = cfg_.tcp_syn_recv; break;
        case kEstablished: s = cfg_.tcp_established; break;
        case kFinWait: s = cfg_.tcp_fin_wait; break;
        case kCloseWait: s = cfg_.tcp_close_wait; break;
        case kLastAck: s = cfg_.tcp_last_ack; break;
        case kTimeWait: s = cfg_.tcp_time_wait; break;
        default: s = cfg_.tcp_close; break;
      }
      break;
    case kUdp: s = (e.flags & kReplied) ? cfg_.udp_stream : cfg_.udp; break;
    case kEcho: s = cfg_.icmp; break;
    default: break;
  }
  return uint64_t(s) * kSecondNs;
}

void Conntrack::prefetch(const uint8_t* pkt, size_t len) const {
  CtLookup l;
  uint8_t icmp_type = 0;
  if (!tuple_of(pkt, len, &l, &icmp_type)) return;
  bool src_is_a;
  __builtin_prefetch(&slots_[hash(key_of(l.src, l.dst, l.sport, l.dport, l.proto, &src_is_a)) & mask_]);
}

CtLookup Conntrack::lookup(const uint8_t* pkt, size_t len, uint64_t now) {
  CtLookup l;
  uint8_t icmp_type = 0;
  if (!tuple_of(pkt, len, &l, &icmp_type)) return l;  // invalid
  const size_t ihl = size_t(pkt[0] & 0x0f) * 4;
  if (l.proto == 6) {
    if (len - ihl < 14) return l;
    l.kind = kTcp;
    l.tcp_flags = pkt[ihl + 13];
  } else if (l.proto == 17) {
    l.kind = kUdp;
  } else if (l.proto == 1 && icmp_is_error(icmp_type)) {
    // Related when the quoted packet (after the 8-byte ICMP header) is a known flow's.
    CtLookup inner;
    uint8_t t = 0;
    if (!tuple_of(pkt + ihl + 8, len - ihl - 8, &inner, &t)) return l;
    if (inner.proto == 1 && icmp_is_error(t)) return l;
    bool a;
    const Key k = key_of(inner.src, inner.dst, inner.sport, inner.dport, inner.proto, &a);
    l.kind = kError;
    l.state = find(k, now) >= 0 ? kCtRelated : kCtInvalid;
    return l;
  } else if (l.proto == 1 && (icmp_type == 8 || icmp_type == 0)) {
    l.kind = kEcho;
  } else {
    l.kind = kOther;
  }
  bool src_is_a;
  const Key k = key_of(l.src, l.dst, l.sport, l.dport, l.proto, &src_is_a);
  l.slot = find(k, now);
  if (l.slot < 0) {
    const uint8_t f = l.tcp_flags & (kSyn | kAck | kRst | kFin);
    const bool can_open = l.kind == kTcp ? f == kSyn : l.kind == kEcho ? icmp_type == 8 : true;
    l.state = can_open ? kCtNew : kCtInvalid;
    return l;
  }
  const Entry& e = slots_[l.slot];
  l.reply = (e.orig_a != 0) != src_is_a;
  if (l.kind == kTcp && !l.reply && (l.tcp_flags & (kSyn | kAck | kRst)) == kSyn &&
      (e.tcp == kTimeWait || e.tcp == kClose)) {
    l.reopen = true;
    l.state = kCtNew;
    return l;
  }
  l.state = (l.reply || (e.flags & kReplied)) ? kCtEstablished : kCtNew;
  return l;
}

// At a quota: expired entries may still be counted; one full sweep finds
// them (at most every kReclaimEvery).
void Conntrack::reclaim(uint64_t now) {
  if (reclaimed_ && now - last_reclaim_ < kReclaimEvery) return;
  reclaimed_ = true;
  last_reclaim_ = now;
  const size_t c = cursor_;
  cursor_ = 0;
  sweep(now, cap_);
  cursor_ = c;
}

CtRefusal Conntrack::commit(const CtLookup& l, uint32_t vassal, uint64_t now) {
  if (l.state == kCtInvalid || l.state == kCtRelated) return CtRefusal::None;
  if (l.slot >= 0) {
    Entry& e = slots_[l.slot];
    if (l.reopen) {
      e.orig_a = e.a == l.src && e.ap == l.sport ? 1 : 0;
      e.flags = 0;
      e.tcp = kSynSent;
    } else {
      if (l.reply) e.flags |= kReplied;
      if (e.kind == kTcp) {
        const uint8_t f = l.tcp_flags;
        const bool by_reply = l.reply;
        const bool fin_side = ((e.flags & kFinByReply) != 0) == by_reply;
        if (f & kRst) {
          e.tcp = kClose;
        } else {
          switch (e.tcp) {
            case kSynSent:
              if (by_reply && (f & kSyn) && (f & kAck)) e.tcp = kSynRecv;
              break;
            case kSynRecv:
              if (!by_reply && (f & kAck) && !(f & kSyn)) e.tcp = kEstablished;
              break;
            case kEstablished:
              if (f & kFin) {
                e.tcp = kFinWait;
                e.flags = uint8_t((e.flags & ~kFinByReply) | (by_reply ? kFinByReply : 0));
              }
              break;
            case kFinWait:
              if (!fin_side && (f & kFin)) e.tcp = kLastAck;
              else if (!fin_side && (f & kAck)) e.tcp = kCloseWait;
              break;
            case kCloseWait:
              if (!fin_side && (f & kFin)) e.tcp = kLastAck;
              break;
            case kLastAck:
              if (fin_side && (f & kAck) && !(f & kFin)) e.tcp = kTimeWait;
              break;
            default:
              break;
          }
        }
      }
    }
    e.expires = now + timeout_ns(e);
    return CtRefusal::None;
  }
  // A new flow: within both quotas?
  auto at_quota = [&]() {
    if (count_ >= cfg_.max) return CtRefusal::Full;
    auto it = per_vassal_.find(vassal);
    if (it != per_vassal_.end() && it->second >= cfg_.max_per_vassal) return CtRefusal::VassalFull;
    return CtRefusal::None;
  };
  CtRefusal r = at_quota();
  if (r != CtRefusal::None) {
    reclaim(now);
    r = at_quota();
    if (r != CtRefusal::None) return r;
  }
  if (count_ + 1 > cap_ - cap_ / 4) return CtRefusal::Full;  // never fuller than 3/4 (max may have shrunk)
  bool src_is_a;
  const Key k = key_of(l.src, l.dst, l.sport, l.dport, l.proto, &src_is_a);
  size_t i = hash(k) & mask_;
  while (slots_[i].used) i = (i + 1) & mask_;
  Entry& e = slots_[i];
  e.a = k.a;
  e.b = k.b;
  e.ap = k.ap;
  e.bp = k.bp;
  e.proto = k.proto;
  e.used = 1;
  e.orig_a = src_is_a ? 1 : 0;
  e.flags = 0;
  e.tcp = kSynSent;
  e.kind = l.kind;
  e.vassal = vassal;
  e.expires = now + timeout_ns(e);
  count_++;
  per_vassal_[vassal]++;
  return CtRefusal::None;
}

void Conntrack::sweep(uint64_t now, size_t budget) {
  for (size_t n = 0; n < budget && n < cap_; n++) {
    const size_t i = cursor_;
    if (slots_[i].used && slots_[i].expires <= now) {
      erase(i);  // an entry may have moved into i: look at it again
      if (slots_[i].used) continue;
    }
    cursor_ = (cursor_ + 1) & mask_;
  }
}

}  // namespace moat
