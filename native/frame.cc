// frame.cc: uwsgi frame reassembly and IPv4 validation (see frame.h).
#include "frame.h"

namespace moat {

FrameStatus next_frame(const uint8_t* buf, size_t len, size_t max_payload,
                       FrameHeader* hdr) {
  if (len < kFrameHeaderSize) return FrameStatus::NeedMore;
  FrameHeader h = decode_frame_header(buf);
  if (h.size > max_payload) return FrameStatus::Oversize;
  if (len - kFrameHeaderSize < h.size) return FrameStatus::NeedMore;
  *hdr = h;
  return FrameStatus::Ok;
}

bool ipv4_check(const uint8_t* pkt, size_t len, Drop* why) {
  if (len < 1) {
    *why = Drop::Short;
    return false;
  }
  const unsigned version = pkt[0] >> 4;
  if (version == 6) {
    *why = Drop::Ipv6;
    return false;
  }
  if (version != 4) {
    *why = Drop::NotIpv4;
    return false;
  }
  if (len < 20) {
    *why = Drop::Short;
    return false;
  }
  const size_t ihl = size_t(pkt[0] & 0x0f) * 4;
  const size_t total = (size_t(pkt[2]) << 8) | pkt[3];
  if (ihl < 20 || ihl > len) {
    *why = Drop::BadHeader;
    return false;
  }
  if (total != len || total < ihl) {
    *why = Drop::BadLength;
    return false;
  }
  return true;
}

PacketKey ipv4_key(const uint8_t* pkt, size_t len) {
  PacketKey k{};
  k.src = ipv4_src(pkt);
  k.dst = ipv4_dst(pkt);
  k.proto = pkt[9];
  const size_t ihl = size_t(pkt[0] & 0x0f) * 4;
  const unsigned frag_offset = ((unsigned(pkt[6]) & 0x1f) << 8) | pkt[7];
  const uint8_t* l4 = pkt + ihl;
  const size_t l4len = len - ihl;
  // Ports live only in a first fragment, and only if it is long enough.
  if (frag_offset != 0) return k;
  if ((k.proto == 6 || k.proto == 17) && l4len >= 4) {
    k.has_l4 = true;
    k.sport = uint16_t((l4[0] << 8) | l4[1]);
    k.dport = uint16_t((l4[2] << 8) | l4[3]);
  } else if (k.proto == 1 && l4len >= 1) {
    k.has_l4 = true;
    k.icmp_type = l4[0];
  }
  return k;
}

}  // namespace moat
