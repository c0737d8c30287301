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

uint16_t ip_checksum(const uint8_t* hdr, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t(hdr[i]) << 8) | hdr[i + 1];
  if (n & 1) sum += uint32_t(hdr[n - 1]) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(~sum);
}

size_t icmp_frag_needed(const uint8_t* pkt, size_t len, uint16_t mtu, uint32_t src,
                        uint8_t* out, size_t cap) {
  if (len < 20) return 0;
  const size_t ihl = size_t(pkt[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > len) return 0;
  const uint32_t from = ipv4_src(pkt);
  if (from == 0 || from == 0xffffffffu || (from >> 28) == 0xe) return 0;
  if (((unsigned(pkt[6]) & 0x1f) << 8 | pkt[7]) != 0) return 0;  // not a first fragment
  if (pkt[9] == 1 && len >= ihl + 1) {
    const uint8_t t = pkt[ihl];
    if (t != 0 && t != 8 && t != 13 && t != 14 && t != 15 && t != 16) return 0;  // an ICMP error
  }
  const size_t quoted = ihl + (len - ihl < 8 ? len - ihl : 8);
  const size_t total = 20 + 8 + quoted;
  if (total > cap) return 0;
  uint8_t* ip = out;
  memset(ip, 0, 28);
  ip[0] = 0x45;
  ip[2] = uint8_t(total >> 8);
  ip[3] = uint8_t(total);
  ip[8] = 64;  // TTL
  ip[9] = 1;   // ICMP
  ip[12] = uint8_t(src >> 24);
  ip[13] = uint8_t(src >> 16);
  ip[14] = uint8_t(src >> 8);
  ip[15] = uint8_t(src);
  memcpy(ip + 16, pkt + 12, 4);  // to the packet's source
  uint8_t* icmp = ip + 20;
  icmp[0] = 3;  // destination unreachable
  icmp[1] = 4;  // fragmentation needed and DF set
  icmp[6] = uint8_t(mtu >> 8);
  icmp[7] = uint8_t(mtu);
  memcpy(icmp + 8, pkt, quoted);
  uint16_t c = ip_checksum(icmp, 8 + quoted);
  icmp[2] = uint8_t(c >> 8);
  icmp[3] = uint8_t(c);
  c = ip_checksum(ip, 20);
  ip[10] = uint8_t(c >> 8);
  ip[11] = uint8_t(c);
  return total;
}

}  // namespace moat
