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

inline uint32_t ipv4_src(const uint8_t* pkt) {
  return (uint32_t(pkt[12]) << 24) | (uint32_t(pkt[13]) << 16) | (uint32_t(pkt[14]) << 8) | pkt[15];
}
inline uint32_t ipv4_dst(const uint8_t* pkt) {
  return (uint32_t(pkt[16]) << 24) | (uint32_t(pkt[17]) << 16) | (uint32_t(pkt[18]) << 8) | pkt[19];
}

}  // namespace moat
