// reject.cc: answers to rejected packets (see reject.h).
#include "reject.h"

#include <cstring>

#include "frame.h"

namespace moat {
namespace {

void put16(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, v >> 16);
  put16(p + 2, v);
}
uint32_t get32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3]; }

// An IPv4 header of total bytes, proto, from src to dst, with its checksum.
void ip_header(uint8_t* ip, size_t total, uint8_t proto, const uint8_t* src, const uint8_t* dst) {
  memset(ip, 0, 20);
  ip[0] = 0x45;
  put16(ip + 2, uint32_t(total));
  ip[6] = 0x40;  // DF
  ip[8] = 64;
  ip[9] = proto;
  memcpy(ip + 12, src, 4);
  memcpy(ip + 16, dst, 4);
  put16(ip + 10, ip_checksum(ip, 20));
}

// The ones' complement sum of the TCP pseudo-header and segment.
uint16_t tcp_checksum(const uint8_t* ip, const uint8_t* tcp, size_t n) {
  uint8_t buf[12 + 20];
  memcpy(buf, ip + 12, 8);
  buf[8] = 0;
  buf[9] = 6;
  put16(buf + 10, uint32_t(n));
  memcpy(buf + 12, tcp, n);
  return ip_checksum(buf, 12 + n);
}

}  // namespace

size_t reject_answer(const uint8_t* pkt, size_t len, uint8_t* out, size_t cap) {
  if (len < 20 || cap < kRejectMax) return 0;
  const size_t ihl = size_t(pkt[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > len) return 0;
  const uint32_t from = get32(pkt + 12);
  if (from == 0 || from == 0xffffffffu || (from >> 28) == 0xe) return 0;
  if ((get32(pkt + 16) >> 28) == 0xe || get32(pkt + 16) == 0xffffffffu) return 0;
  if (((unsigned(pkt[6]) & 0x1f) << 8 | pkt[7]) != 0) return 0;  // not a first fragment
  const uint8_t proto = pkt[9];
  const uint8_t* l4 = pkt + ihl;
  const size_t l4len = len - ihl;
  if (proto == 6) {
    if (l4len < 20) return 0;
    const uint8_t flags = l4[13];
    if (flags & 0x04) return 0;  // never answer a reset
    uint8_t* tcp = out + 20;
    memset(tcp, 0, 20);
    memcpy(tcp, l4 + 2, 2);      // ports swapped
    memcpy(tcp + 2, l4, 2);
    tcp[12] = 5 << 4;
    if (flags & 0x10) {
      // RFC 793: <SEQ=SEG.ACK><CTL=RST>
      memcpy(tcp + 4, l4 + 8, 4);
      tcp[13] = 0x04;
    } else {
      // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>; SYN and FIN count one each
      const size_t doff = size_t(l4[12] >> 4) * 4;
      const uint32_t payload = doff <= l4len ? uint32_t(len - ihl - doff) : 0;
      const uint32_t seg_len = payload + ((flags & 0x02) ? 1 : 0) + ((flags & 0x01) ? 1 : 0);
      put32(tcp + 8, get32(l4 + 4) + seg_len);
      tcp[13] = 0x14;
    }
    ip_header(out, 40, 6, pkt + 16, pkt + 12);
    put16(tcp + 16, tcp_checksum(out, tcp, 20));
    return 40;
  }
  if (proto == 1) {
    if (l4len < 1) return 0;
    const uint8_t t = l4[0];
    if (t != 0 && t != 8 && t != 13 && t != 14 && t != 15 && t != 16) return 0;  // an ICMP error (or unknown)
  }
  const size_t quoted = ihl + (l4len < 8 ? l4len : 8);
  const size_t total = 20 + 8 + quoted;
  uint8_t* icmp = out + 20;
  memset(icmp, 0, 8);
  icmp[0] = 3;
  icmp[1] = proto == 17 ? 3 : 13;  // port unreachable; administratively prohibited
  memcpy(icmp + 8, pkt, quoted);
  put16(icmp + 2, ip_checksum(icmp, 8 + quoted));
  ip_header(out, total, 1, pkt + 16, pkt + 12);
  return total;
}

}  // namespace moat
