// frame.h: the uwsgi packet framing used between router and devices, and the
// IPv4 checks every packet from a peer goes through.
//
// Wire format (uWSGI 2.0): a 4-byte header, then the payload.
//   byte 0    modifier1, always 0 here
//   bytes 1-2 payload size, unsigned 16-bit little-endian
//   byte 3    modifier2: 0 = one raw IPv4 packet, 1 = a peer's rule block
// Every length here comes from an untrusted peer: the reassembler never reads
// past the bytes it was given and refuses a size above the caller's limit
// before any payload is buffered.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "drops.h"
#include "rule.h"

namespace moat {

constexpr size_t kFrameHeaderSize = 4;
constexpr size_t kMaxFramePayload = 65535;   // what 16 bits can announce
constexpr size_t kUwsgiMaxPayload = 8188;    // uWSGI's 8192-byte buffers - header
constexpr uint8_t kModPacket = 0;
constexpr uint8_t kModRuleBlock = 1;

struct FrameHeader {
  uint8_t mod1;
  uint16_t size;
  uint8_t mod2;
};

inline FrameHeader decode_frame_header(const uint8_t* p) {
  return FrameHeader{p[0], static_cast<uint16_t>(p[1] | (p[2] << 8)), p[3]};
}

inline void encode_frame_header(uint8_t* p, uint16_t size, uint8_t mod2 = kModPacket) {
  p[0] = 0;
  p[1] = static_cast<uint8_t>(size & 0xff);
  p[2] = static_cast<uint8_t>(size >> 8);
  p[3] = mod2;
}

enum class FrameStatus {
  Ok,        // a whole frame is at the front: *hdr set, payload at buf + 4
  NeedMore,  // not enough bytes yet (keep them, read more)
  Oversize,  // the header announces more than max_payload: protocol error
};

// Looks at the front of buf[0..len): is a whole frame there? On Ok, the frame
// occupies kFrameHeaderSize + hdr->size bytes. Never reads past len.
FrameStatus next_frame(const uint8_t* buf, size_t len, size_t max_payload,
                       FrameHeader* hdr);

// Checks that pkt[0..len) is one well-formed IPv4 packet whose total length
// equals len. Returns true, or false with *why set (Short, Ipv6, NotIpv4,
// BadHeader, BadLength).
bool ipv4_check(const uint8_t* pkt, size_t len, Drop* why);

// The firewall's view of a packet that passed ipv4_check.
PacketKey ipv4_key(const uint8_t* pkt, size_t len);

// Packets too big for the next hop (a peer's frame limit), as a router answers
// them (RFC 791, RFC 1191). Both write only into out[0..cap) and return the
// bytes written, 0 if nothing fits or the input does not qualify.

// The DF bit of a packet that passed ipv4_check.
inline bool ipv4_df(const uint8_t* pkt) { return (pkt[6] & 0x40) != 0; }

// ICMP destination unreachable, fragmentation needed (type 3 code 4) about
// pkt, carrying next-hop MTU `mtu`, from `src` to pkt's source, TTL 64:
// the IPv4 header (20 bytes, no options) + ICMP header (8) + pkt's header and
// the first 8 bytes of its data. No answer (0) about an ICMP error, a non-first
// fragment, or a packet from 0.0.0.0 / broadcast / multicast (RFC 1122 3.2.2).
size_t icmp_frag_needed(const uint8_t* pkt, size_t len, uint16_t mtu, uint32_t src,
                        uint8_t* out, size_t cap);

// Splits pkt (DF clear) into fragments of at most `mtu` bytes each, calling
// emit(fragment, length) for each in order; the fragments are built in
// scratch[0..mtu). Returns the number of fragments, 0 (nothing emitted) if
// pkt has IP options (not copied here: such packets are dropped and counted by
// the caller), DF set, or mtu leaves no room for 8 data bytes.
template <typename Emit>
size_t ipv4_fragment(const uint8_t* pkt, size_t len, size_t mtu, uint8_t* scratch, Emit emit);

// The IPv4 header checksum of hdr[0..n) (n even), checksum field included as is.
uint16_t ip_checksum(const uint8_t* hdr, size_t n);

inline uint32_t ipv4_src(const uint8_t* pkt) {
  return (uint32_t(pkt[12]) << 24) | (uint32_t(pkt[13]) << 16) | (uint32_t(pkt[14]) << 8) | pkt[15];
}
inline uint32_t ipv4_dst(const uint8_t* pkt) {
  return (uint32_t(pkt[16]) << 24) | (uint32_t(pkt[17]) << 16) | (uint32_t(pkt[18]) << 8) | pkt[19];
}

}  // namespace moat

namespace moat {

template <typename Emit>
size_t ipv4_fragment(const uint8_t* pkt, size_t len, size_t mtu, uint8_t* scratch, Emit emit) {
  if ((pkt[0] & 0x0f) != 5 || ipv4_df(pkt) || mtu < 28 || len <= 20) return 0;
  const size_t data = len - 20;
  const size_t chunk = (mtu - 20) & ~size_t(7);
  const unsigned flags_off = (unsigned(pkt[6]) << 8) | pkt[7];
  const bool more_after = (flags_off & 0x2000) != 0;  // pkt itself a non-last fragment
  const unsigned base = flags_off & 0x1fff;           // in 8-byte units
  size_t n = 0;
  for (size_t off = 0; off < data; off += chunk) {
    const size_t part = data - off < chunk ? data - off : chunk;
    const bool last = off + part == data;
    memcpy(scratch, pkt, 20);
    memcpy(scratch + 20, pkt + 20 + off, part);
    const size_t total = 20 + part;
    const unsigned fo = (base + unsigned(off / 8)) | ((last && !more_after) ? 0u : 0x2000u);
    scratch[2] = uint8_t(total >> 8);
    scratch[3] = uint8_t(total);
    scratch[6] = uint8_t(fo >> 8);
    scratch[7] = uint8_t(fo);
    scratch[10] = scratch[11] = 0;
    const uint16_t c = ip_checksum(scratch, 20);
    scratch[10] = uint8_t(c >> 8);
    scratch[11] = uint8_t(c);
    emit(static_cast<const uint8_t*>(scratch), total);
    n++;
  }
  return n;
}

}  // namespace moat
