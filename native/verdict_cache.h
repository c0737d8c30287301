// verdict_cache.h: the rule a big chain chose for recent packet keys.
//
// A compiled chain of 10,000 rules answers in ~11 dependent steps down its
// tree and a leaf scan (60-80 ns, classifier.cc); the packets of one flow ask
// it the same question again and again. This cache remembers the answer by
// the exact key the classifier looks at (addresses, protocol, ports, ICMP
// type, whether there is a transport header, the connection state), so a hit
// is the classifier's own answer, never an approximation. Direct-mapped: a
// key that collides replaces the older one; a burst of many flows costs a
// hash and a compare a packet more than no cache.
//
// Threads: one reader and writer (the router's loop, or the JS thread for the
// firewall binding's own RuleSet); a new rule set brings new, empty caches.
// Limits: kSlots entries (6 KiB), allocated with the chain. Syscalls: none.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "rule.h"

namespace moat {

class VerdictCache {
 public:
  static constexpr size_t kSlots = 256;
  // Chains shorter than this answer about as fast without a cache.
  static constexpr size_t kMinRules = 64;

  VerdictCache() : slots_(new Slot[kSlots]()) {}

  // The rule index cached for k (-1: none matched), or false on a miss.
  bool find(const PacketKey& k, int32_t* rule) const {
    const Key key = key_of(k);
    const Slot& s = slots_[slot_of(key)];
    if (!s.used || s.key.a != key.a || s.key.b != key.b) return false;
    *rule = s.rule;
    return true;
  }

  void store(const PacketKey& k, int32_t rule) {
    const Key key = key_of(k);
    Slot& s = slots_[slot_of(key)];
    s.key = key;
    s.rule = rule;
    s.used = 1;
  }

 private:
  struct Key {
    uint64_t a, b;
  };
  struct Slot {
    Key key;
    int32_t rule;
    uint32_t used;
  };

  // Every field the classifier reads; a field it ignores (ports without a
  // transport header) is whatever ipv4_key left there, so equal packets
  // still give equal keys.
  static Key key_of(const PacketKey& k) {
    Key key;
    key.a = uint64_t(k.src) << 32 | k.dst;
    key.b = uint64_t(k.sport) << 48 | uint64_t(k.dport) << 32 | uint64_t(k.proto) << 24 |
            uint64_t(k.has_l4) << 16 | uint64_t(k.icmp_type) << 8 | k.state;
    return key;
  }

  static size_t slot_of(const Key& key) {
    const uint64_t h = key.a * 0x9e3779b97f4a7c15ull ^ key.b * 0xc2b2ae3d27d4eb4full;
    return size_t((h ^ (h >> 29)) >> 56);  // kSlots = 2^8
  }

  std::unique_ptr<Slot[]> slots_;
};

}  // namespace moat
