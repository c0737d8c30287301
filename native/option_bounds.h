// option_bounds.h: the hard limits native code enforces on the option values
// it is handed (router_binding.cc, device_binding.cc): outside them a buffer
// would be sized or indexed wrongly, or absurd memory asked for. They are
// limits, not defaults and not policy: TypeScript's option table holds the
// defaults and the bounds a user sees, and those must lie within these (the
// addon exports them as optionBounds, keyed by the JS field names below, so
// a unit test can compare). Syscalls: none.
#pragma once
#include <cstdint>

namespace moat {

struct Bounds {
  int64_t lo, hi;  // inclusive
};

// Largest frame payload (maxFrame): at least the 576-byte datagram every
// IPv4 host must accept (below it fragmenting to fit and ICMP
// fragmentation-needed answers stop making sense), at most what the frame
// header's 16-bit size can say.
constexpr Bounds kMaxFrameBounds{576, 65535};
// An outbound queue (queueBytes), headers included: at least one frame of
// maxFrame (checked against it too: queueBytes >= maxFrame + 4), at most 1 GiB.
constexpr Bounds kQueueBytesBounds{4 + 576, int64_t(1) << 30};
// Polling after moving a packet before sleeping (busyPollUs, busy_poll.h):
// a core spins meanwhile, so at most a millisecond.
constexpr Bounds kBusyPollUsBounds{0, 1000};
// How long the router lets a peer's frames wait to share a write (holdUs,
// peer.h's HoldList): at most a second.
constexpr Bounds kHoldUsBounds{0, 1000000};
// The tun's queues toward the router (tunQueues, router.cc): the kernel
// allows 256 (MAX_TAP_QUEUES); a reading loop looks at no more than 64.
constexpr Bounds kTunQueuesBounds{1, 64};
// A connection's send buffer (sndbuf, sndbuf.h): 0 (the kernel's) to 64 MiB.
constexpr Bounds kSndbufBounds{0, int64_t(1) << 26};
// What the router's grown send buffers may add up to (sndbufBudget, sndbuf.h's
// SndbufGrowth): 0 (none grows) to 16 GiB.
constexpr Bounds kSndbufBudgetBounds{0, int64_t(1) << 34};
// The device's reconnect delays (reconnectMinMs, reconnectMaxMs; max >= min
// is checked too): 1 ms to an hour.
constexpr Bounds kReconnectMsBounds{1, 3600000};
// The router socket file's permission bits (socketMode).
constexpr Bounds kSocketModeBounds{0, 07777};
// A peer's rate limit (setLimits, limiter.h); 0: that bucket unlimited, or
// the default burst. At most 1 Tbit/s, 1e9 packets/s, a 4 GiB or 1e9-packet burst.
constexpr Bounds kRateBitsBounds{0, 1000000000000LL};
constexpr Bounds kRatePacketsBounds{0, 1000000000LL};
constexpr Bounds kBurstBytesBounds{0, int64_t(1) << 32};
constexpr Bounds kBurstPacketsBounds{0, 1000000000LL};

// The connection table (conntrack.h): its flows, all vassals or one
// (ctMax, ctMaxPerVassal; 32 bytes a slot, 1.5 slots a flow: 16 Mi flows
// is 1 GiB), and its timeouts in seconds (a day is 86400; at most 30 days).
constexpr Bounds kCtMaxBounds{1, int64_t(1) << 24};
constexpr Bounds kCtTimeoutBounds{1, 30 * 86400};

// By JS field name, as router_binding.cc and device_binding.cc read them
// (a field both read has one bound).
struct FieldBounds {
  const char* field;
  Bounds bounds;
};
constexpr FieldBounds kOptionBounds[] = {
    {"maxFrame", kMaxFrameBounds},       {"queueBytes", kQueueBytesBounds},
    {"busyPollUs", kBusyPollUsBounds},   {"holdUs", kHoldUsBounds},
    {"tunQueues", kTunQueuesBounds},
    {"sndbuf", kSndbufBounds},           {"reconnectMinMs", kReconnectMsBounds},
    {"sndbufBusy", kSndbufBounds},       {"sndbufBudget", kSndbufBudgetBounds},
    {"reconnectMaxMs", kReconnectMsBounds}, {"socketMode", kSocketModeBounds},
    {"ctMax", kCtMaxBounds}, {"ctMaxPerVassal", kCtMaxBounds},
    {"ctTimeoutTcpSynSent", kCtTimeoutBounds}, {"ctTimeoutTcpSynRecv", kCtTimeoutBounds},
    {"ctTimeoutTcpEstablished", kCtTimeoutBounds}, {"ctTimeoutTcpFinWait", kCtTimeoutBounds},
    {"ctTimeoutTcpCloseWait", kCtTimeoutBounds}, {"ctTimeoutTcpLastAck", kCtTimeoutBounds},
    {"ctTimeoutTcpTimeWait", kCtTimeoutBounds}, {"ctTimeoutTcpClose", kCtTimeoutBounds},
    {"ctTimeoutUdp", kCtTimeoutBounds}, {"ctTimeoutUdpStream", kCtTimeoutBounds},
    {"ctTimeoutIcmp", kCtTimeoutBounds}, {"ctTimeoutGeneric", kCtTimeoutBounds},
};

}  // namespace moat
