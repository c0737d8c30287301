// rule.h: what a firewall rule and a packet's key look like to native code.
//
// Rules are parsed and checked in TypeScript (src/rules/) and handed over as
// plain values; the classifier (classifier.h) compiles a chain of them. All
// addresses and masks are IPv4 in host byte order.
#pragma once
#include <cstdint>
#include <vector>

namespace moat {

// Reject: a deny that answers (reject.h).
enum class Action : uint8_t { Allow = 0, Deny = 1, Reject = 2 };

struct PortRange {
  uint16_t lo;
  uint16_t hi;  // inclusive, lo <= hi
};

// One rule of a chain. A field left at its "any" value matches every packet.
struct Rule {
  Action action = Action::Allow;
  uint32_t src = 0;       // network, already masked
  uint8_t src_bits = 0;   // prefix length 0..32; 0 (or src == 0) matches any
  uint32_t dst = 0;
  uint8_t dst_bits = 0;
  int16_t proto = -1;     // -1 any, else the IPv4 protocol number
  std::vector<PortRange> sport;  // empty: any (only set with proto tcp/udp)
  std::vector<PortRange> dport;
  int16_t icmp_type = -1;        // -1 any (only set with proto icmp)
  // Connection states (conntrack.h: bit 1 << kCtNew ...) the rule matches;
  // 0: any (the rule names no state). A chain with such a rule tracks flows.
  uint8_t states = 0;
};

// What a rule can look at in a packet. A rule that names ports or an ICMP type
// never matches a packet without a transport header (has_l4 == false): a
// non-first fragment, or a first fragment too short to carry one.
struct PacketKey {
  uint32_t src;
  uint32_t dst;
  uint8_t proto;
  bool has_l4;
  uint16_t sport;      // tcp/udp only
  uint16_t dport;      // tcp/udp only
  uint8_t icmp_type;   // icmp only
  uint8_t state;       // conntrack.h's CtState of the packet (only rules with states look at it)
};

// The reference semantics, shared by the compiled classifier's tests: does
// this one rule match this key? (uWSGI: an address of 0.0.0.0 matches any.)
bool rule_matches(const Rule& r, const PacketKey& k);

// rule_matches with a packet state: a rule naming states matches only a
// packet in one of them.
inline bool rule_matches_state(const Rule& r, const PacketKey& k) {
  return (r.states == 0 || (r.states >> k.state) & 1) && rule_matches(r, k);
}

}  // namespace moat
