// conntrack.h: the router's connection table, used only while a loaded rule
// names a `state` (a rule set without one never touches it, and no table is
// allocated). It answers, for a packet, the state it meets (new,
// established, related, invalid: as Linux conntrack defines them) and, once
// a chain accepted the packet, records what the packet did (commit).
//
// A flow is keyed by protocol, both addresses and both ports (an ICMP echo by
// its id), normalised so both directions find one entry; the entry knows
// which side opened it. TCP is followed through SYN, SYN-ACK, FIN and RST
// only for its timeouts (no sequence window checks); UDP, ICMP echo and other
// protocols have a timeout (a longer one once answered). An ICMP error that
// quotes a known flow is related. Only accepted packets change the table.
//
// The table is one open-addressing array (linear probing, backward-shift
// deletion: no tombstones) allocated once, calloc'd so untouched pages cost
// nothing; 32 bytes a slot, slots = the next power of two >= 1.5 x max.
// Expired entries are removed when a lookup meets them and by a bounded
// sweep per wakeup (sweep()); a new flow finds the table (or its vassal's
// share) full only after one full sweep of expired entries, at most every
// 100 ms. The per-vassal count is an unordered_map by the vassal's address
// (it allocates when a vassal first opens a flow, never per packet).
//
// Limits: IPv4, no defragmentation: a non-first fragment (no ports) is
// invalid. Threads: the router's loop thread only. Syscalls: none (the
// hash seed comes from std::random_device at construction).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>

namespace moat {

// Bits of a rule's state mask (Rule::states) and of a packet's state.
enum CtState : uint8_t { kCtNew = 0, kCtEstablished = 1, kCtRelated = 2, kCtInvalid = 3 };
constexpr int kCtStates = 4;

// Timeouts in seconds, limits in flows: every value comes from the option table.
struct ConntrackConfig {
  bool set = false;          // setConntrack() was called
  uint32_t max = 0;          // flows in the table, all vassals
  uint32_t max_per_vassal = 0;
  uint32_t tcp_syn_sent = 0, tcp_syn_recv = 0, tcp_established = 0, tcp_fin_wait = 0,
           tcp_close_wait = 0, tcp_last_ack = 0, tcp_time_wait = 0, tcp_close = 0;
  uint32_t udp = 0, udp_stream = 0, icmp = 0, generic = 0;
};

// What a lookup found, for commit(): valid until the table changes.
struct CtLookup {
  uint8_t state = kCtInvalid;
  uint8_t kind = 0;        // internal: tcp, udp, echo, other, error, none
  uint8_t tcp_flags = 0;
  bool reply = false;      // the packet goes the way the flow's answers go
  bool reopen = false;     // a SYN on a closed TCP entry: the flow starts again
  int64_t slot = -1;       // the entry, or -1
  // The packet's key as written (orig side first), for a new entry.
  uint32_t src = 0, dst = 0;
  uint16_t sport = 0, dport = 0;
  uint8_t proto = 0;
};

enum class CtRefusal : uint8_t { None, Full, VassalFull };

class Conntrack {
 public:
  explicit Conntrack(const ConntrackConfig& c);
  ~Conntrack();
  Conntrack(const Conntrack&) = delete;
  Conntrack& operator=(const Conntrack&) = delete;

  // The state pkt (passed ipv4_check) meets at time now (ns).
  CtLookup lookup(const uint8_t* pkt, size_t len, uint64_t now);
  // Starts loading the slot pkt's flow hashes to, so that its lookup, a
  // packet later, does not wait on memory (the table is larger than the
  // caches: one miss per packet otherwise). No effect on the table.
  void prefetch(const uint8_t* pkt, size_t len) const;
  // pkt was accepted: create or update its entry. vassal: the address of the
  // vassal whose flow it is (its quota). A new flow over a quota is refused.
  CtRefusal commit(const CtLookup& l, uint32_t vassal, uint64_t now);
  // New limits and timeouts (the table keeps its size and entries when max
  // did not grow past its capacity; the caller makes a new table otherwise).
  void configure(const ConntrackConfig& c) { cfg_ = c; }
  bool fits(uint32_t max) const { return slots_for(max) <= cap_; }
  // Removes expired entries among the next `budget` slots.
  void sweep(uint64_t now, size_t budget);

  size_t size() const { return count_; }
  size_t capacity() const { return cap_; }
  static size_t slot_bytes();
  static size_t slots_for(uint32_t max);

 private:
  struct Entry;
  struct Key {
    uint32_t a, b;
    uint16_t ap, bp;
    uint8_t proto;
  };
  static Key key_of(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport, uint8_t proto, bool* src_is_a);
  size_t hash(const Key& k) const;
  int64_t find(const Key& k, uint64_t now);
  void erase(size_t i);
  uint64_t timeout_ns(const Entry& e) const;
  void reclaim(uint64_t now);

  ConntrackConfig cfg_;
  Entry* slots_ = nullptr;
  size_t cap_ = 0, mask_ = 0, count_ = 0, cursor_ = 0;
  uint64_t seed_ = 0;
  uint64_t last_reclaim_ = 0;
  bool reclaimed_ = false;
  std::unordered_map<uint32_t, uint32_t> per_vassal_;
};

// A new rule set's table: kept across reloads while rules name states (new
// limits and timeouts apply), made anew (empty) when max outgrew it, gone
// when no rule names a state.
inline void conntrack_install(std::unique_ptr<Conntrack>* ct, bool stateful, const ConntrackConfig& c) {
  if (!stateful) ct->reset();
  else if (*ct && (*ct)->fits(c.max)) (*ct)->configure(c);
  else ct->reset(new Conntrack(c));
}

}  // namespace moat
