// drops.h: why the data path drops a packet. Every drop is counted by reason,
// globally and for the peer concerned; names are what metrics and stats show.
#pragma once
#include <cstdint>

namespace moat {

#define MOAT_DROP_REASONS(X)                                                   \
  X(Short, "short")                   /* shorter than an IPv4 header */        \
  X(Ipv6, "ipv6")                     /* an IPv6 packet (not routed) */        \
  X(NotIpv4, "not_ipv4")              /* any other version nibble */           \
  X(BadHeader, "bad_header")          /* IHL below 5 or beyond the packet */   \
  X(BadLength, "bad_length")          /* total length differs from frame */    \
  X(BadModifier, "bad_modifier")      /* modifier1 != 0 or unknown modifier2 */\
  X(RuleBlock, "rule_block")          /* a peer's rule block, refused */       \
  X(Spoof, "spoof")                   /* source is not the peer's address */   \
  X(Collision, "collision")           /* address held by another live peer */  \
  X(Gateway, "gateway")               /* address of the router's own device */ \
  X(BadSource, "bad_source")          /* 0.0.0.0, broadcast, multicast, the vassal network's own */ \
  X(Unbound, "unbound")               /* bound or reserved for someone else */ \
  X(Outside, "outside_network")       /* learned from outside the vassal network */ \
  X(FirewallIn, "firewall_in")        /* denied by the in chain */             \
  X(FirewallOut, "firewall_out")      /* denied by the out chain */            \
  X(VassalFirewallIn, "vassal_firewall_in")   /* denied by the peer's own in chain (peer_rules.h) */ \
  X(VassalFirewallOut, "vassal_firewall_out") /* denied by the peer's own out chain */ \
  X(NoPeer, "no_peer")                /* no peer holds the destination */      \
  X(QueueFull, "queue_full")          /* the peer's outbound queue is full */  \
  X(TunWrite, "tun_write")            /* the tun device refused the packet */  \
  X(TooBig, "too_big")                /* larger than the peer's frame limit */ \
  X(BadVnet, "bad_vnet")              /* a virtio-net header that does not fit */\
  X(BadHello, "bad_hello")            /* an offload hello that is not ours */   \
  X(NotNegotiated, "not_negotiated")  /* offload frame without a hello first */\
  X(RateLimit, "rate_limit")          /* over the peer's rate limit, its queue full */ \
  X(ConntrackFull, "conntrack_full")  /* a new flow, the connection table full */ \
  X(ConntrackVassal, "conntrack_vassal") /* a new flow over its vassal's share of the table */

enum class Drop : uint8_t {
#define MOAT_DROP_ENUM(name, str) name,
  MOAT_DROP_REASONS(MOAT_DROP_ENUM)
#undef MOAT_DROP_ENUM
  Count
};

constexpr int kDropCount = static_cast<int>(Drop::Count);

inline const char* drop_name(Drop d) {
  static const char* const names[] = {
#define MOAT_DROP_NAME(name, str) str,
      MOAT_DROP_REASONS(MOAT_DROP_NAME)
#undef MOAT_DROP_NAME
  };
  return names[static_cast<int>(d)];
}

}  // namespace moat
