// option_bounds.h: the hard limits native code enforces on option values,
// for memory safety and the wire format, and nothing else: no defaults (the
// option table in src/config/options-table.ts has them, and TypeScript sends
// every value). The table's bounds must lie inside these (a unit test checks
// it against the addon's optionBounds and `moat-vassal --device-options`).
#pragma once
#include <cstdint>

namespace moat {

struct Bound {
  uint32_t lo, hi;
};

constexpr Bound kMaxFrame{576, 65535};         // frame payload: IPv4's minimum datagram .. the 16-bit size field
constexpr Bound kQueueBytes{580, 1u << 30};    // at least one frame with its 4-byte header
constexpr Bound kBusyPollUs{0, 1000};          // busy_poll.h: at most 1 ms per wake-up
constexpr Bound kHoldUs{0, 1000000};           // at most 1 s held
constexpr Bound kSndbuf{0, 1u << 26};          // SO_SNDBUF(FORCE) request
constexpr Bound kReconnectMs{1, 3600000};      // device reconnect backoff
constexpr Bound kSocketMode{0, 07777};

}  // namespace moat
