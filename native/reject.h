// reject.h: the answer to a packet a `reject` rule refused, as a host that
// does not serve it would answer: a TCP reset for TCP, ICMP port
// unreachable (type 3 code 3) for UDP, ICMP administratively prohibited
// (type 3 code 13) otherwise, from the refused packet's destination to its
// source. The ICMP answers quote the IP header and 8 bytes (RFC 792).
//
// No answer (0) to: a RST, an ICMP error, a non-first fragment, a source
// that is 0.0.0.0, broadcast or multicast, a packet too short to answer.
// Pure functions; the caller rate-limits and counts. Syscalls: none.
#pragma once
#include <cstddef>
#include <cstdint>

namespace moat {

// Room an answer needs at most.
constexpr size_t kRejectMax = 20 + 8 + 60 + 8;

// Writes the answer to pkt (len bytes, passed ipv4_check) into out (cap
// bytes); returns its length, or 0 for no answer.
size_t reject_answer(const uint8_t* pkt, size_t len, uint8_t* out, size_t cap);

}  // namespace moat
