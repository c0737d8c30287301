// gso.cc: virtio-net header handling and TSO/USO splitting (see gso.h).
//
// Choices that follow the kernel (net/ipv4/af_inet.c inet_gso_segment,
// tcp_offload.c tcp_gso_segment, udp_offload.c __udp_gso_segment,
// net/core/dev.c skb_checksum_help):
// - IPv4 id: the first segment keeps the packet's id, each next one +1, for
//   TCP and for UDP_L4 alike (inet_gso_segment numbers every segment unless
//   SKB_GSO_TCP_FIXEDID; UDP_L4 is not UFO, so it is not fragmented).
// - TCP: sequence number advances by the payload before the segment; FIN and
//   PSH only on the last segment, CWR only on the first.
// - A finished checksum that folds to 0 is stored as 0xffff (CSUM_MANGLED_0;
//   needed for UDP, equivalent for TCP).
// - hdr_len is a hint: the kernel fills it with skb_headlen(), which on the
//   forward path can be the whole first packet (wireguard-go notes the same),
//   so it must only fit in the packet; the real header length is taken from
//   the IPv4 IHL and the TCP data offset (or 8 for UDP).
// - A GSO packet whose payload fits in one segment is emitted as one packet
//   (checksums recomputed) rather than refused.
#include "gso.h"

#include <cstring>

namespace moat {
namespace {

constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kTcpFin = 0x01, kTcpPsh = 0x08, kTcpCwr = 0x80;

inline uint16_t load16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }
inline uint32_t load32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}
inline void store16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}
inline void store32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24);
  p[1] = uint8_t(v >> 16);
  p[2] = uint8_t(v >> 8);
  p[3] = uint8_t(v);
}

// Ones' complement sum of p[0..n) as big-endian 16-bit words (an odd last
// byte padded with zero), added to sum. 32-bit words into a 64-bit
// accumulator: 2^16 == 1 mod 0xffff, so folding later gives the same result.
uint64_t sum_bytes(const uint8_t* p, size_t n, uint64_t sum) {
  while (n >= 4) {
    sum += load32(p);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    sum += load16(p);
    p += 2;
    n -= 2;
  }
  if (n) sum += uint32_t(p[0]) << 8;
  return sum;
}

inline uint16_t fold(uint64_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return uint16_t(s);
}

// The IPv4 header of pkt[0..len): version 4, IHL >= 5 inside the packet,
// total length == len. Returns the header length, 0 if not sane.
size_t ipv4_header(const uint8_t* pkt, size_t len) {
  if (len < 20 || (pkt[0] >> 4) != 4) return 0;
  const size_t ihl = size_t(pkt[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > len || load16(pkt + 2) != len) return 0;
  return ihl;
}

// Sets *err; the -1 gso_split returns.
inline int fail(GsoError* err, GsoError e) {
  *err = e;
  return -1;
}

// Sets *err; false.
inline bool refuse(GsoError* err, GsoError e) {
  *err = e;
  return false;
}

}  // namespace

virtio_net_hdr vnet_read(const uint8_t* p) {
  virtio_net_hdr h;
  memcpy(&h, p, sizeof h);
  return h;
}

void vnet_write(uint8_t* p, const virtio_net_hdr& h) { memcpy(p, &h, sizeof h); }

// A packet with gso_type NONE that may go out as it is once its checksum is
// finished: a whole IPv4 header (its checksum verified) and a checksum that
// starts after it (finishing it inside would corrupt the header just checked).
static bool single_ok(const virtio_net_hdr& h, const uint8_t* pkt, size_t len, GsoError* err) {
  *err = GsoError::none;
  // The kernel refuses NONE|ECN too (virtio_net_hdr_to_skb).
  if (h.gso_type != VIRTIO_NET_HDR_GSO_NONE) return refuse(err, GsoError::bad_header);
  const size_t ihl = ipv4_header(pkt, len);
  if (ihl == 0 || fold(sum_bytes(pkt, ihl, 0)) != 0xffff) return refuse(err, GsoError::bad_ip);
  if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && h.csum_start < ihl) return refuse(err, GsoError::bad_header);
  return true;
}

bool vnet_finish_single(const virtio_net_hdr& h, uint8_t* pkt, size_t len, GsoError* err) {
  return single_ok(h, pkt, len, err) && vnet_finish_csum(h, pkt, len, err);
}

bool vnet_finish_csum(const virtio_net_hdr& h, uint8_t* pkt, size_t len, GsoError* err) {
  *err = GsoError::none;
  if (!(h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)) return true;
  const size_t start = h.csum_start, off = h.csum_offset;
  // An odd offset cannot hold a ones' complement sum of 16-bit words taken
  // from csum_start (the stored value would not verify): no real header has one.
  if (start > len || off > len - start || len - start - off < 2 || (off & 1)) {
    *err = GsoError::bad_header;
    return false;
  }
  // The field already holds the pseudo-header sum (CHECKSUM_PARTIAL): summing
  // it with the rest and complementing gives the final checksum.
  uint16_t c = uint16_t(~fold(sum_bytes(pkt + start, len - start, 0)));
  if (c == 0) c = 0xffff;
  store16(pkt + start + off, c);
  return true;
}

int gso_split(const virtio_net_hdr& h, const uint8_t* pkt, size_t len,
              uint8_t* scratch, size_t scratch_len,
              SegmentSink sink, void* ctx, GsoError* err) {
  *err = GsoError::none;
  const uint8_t type = h.gso_type & uint8_t(~VIRTIO_NET_HDR_GSO_ECN);
  const bool ecn = (h.gso_type & VIRTIO_NET_HDR_GSO_ECN) != 0;

  if (type == VIRTIO_NET_HDR_GSO_NONE) {
    if (!single_ok(h, pkt, len, err)) return -1;
    if (!(h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)) {
      sink(ctx, pkt, len);
      return 1;
    }
    if (scratch_len < len) return fail(err, GsoError::bad_header);
    memcpy(scratch, pkt, len);
    if (!vnet_finish_csum(h, scratch, len, err)) return -1;
    sink(ctx, scratch, len);
    return 1;
  }

  if (type != VIRTIO_NET_HDR_GSO_TCPV4 && type != VIRTIO_NET_HDR_GSO_UDP_L4)
    return fail(err, GsoError::unsupported);
  const bool tcp = type == VIRTIO_NET_HDR_GSO_TCPV4;
  if ((ecn && !tcp) || h.gso_size == 0 || h.hdr_len > len) return fail(err, GsoError::bad_header);

  const size_t ihl = ipv4_header(pkt, len);
  if (ihl == 0) return fail(err, GsoError::bad_ip);
  if (load16(pkt + 6) & 0x3fff) return fail(err, GsoError::bad_ip);  // a fragment: not GSO's
  if (pkt[9] != (tcp ? kProtoTcp : kProtoUdp)) return fail(err, GsoError::bad_header);

  // The real header length, from the packet itself.
  size_t l4h = 8;
  if (tcp) {
    if (len - ihl < 20) return fail(err, GsoError::bad_header);
    l4h = size_t(pkt[ihl + 12] >> 4) * 4;
    if (l4h < 20) return fail(err, GsoError::bad_header);
  }
  if (len - ihl < l4h) return fail(err, GsoError::bad_header);
  const size_t hlen = ihl + l4h;
  if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) &&
      (h.csum_start != ihl || h.csum_offset != (tcp ? 16 : 6)))
    return fail(err, GsoError::bad_header);

  const size_t payload = len - hlen;
  const size_t mss = h.gso_size;
  const size_t n = payload == 0 ? 1 : (payload + mss - 1) / mss;
  if (n > size_t(kMaxSegments)) return fail(err, GsoError::too_many);
  if (scratch_len < hlen + (payload < mss ? payload : mss)) return fail(err, GsoError::bad_header);

  const uint16_t id = load16(pkt + 4);
  const uint32_t seq = tcp ? load32(pkt + ihl + 4) : 0;
  // Pseudo-header: addresses and protocol; the L4 length is added per segment.
  const uint64_t pseudo = sum_bytes(pkt + 12, 8, 0) + pkt[9];

  for (size_t i = 0; i < n; i++) {
    const size_t off = i * mss;
    const size_t plen = payload - off < mss ? payload - off : mss;
    const size_t seg = hlen + plen;
    memcpy(scratch, pkt, hlen);
    memcpy(scratch + hlen, pkt + hlen + off, plen);

    store16(scratch + 2, uint16_t(seg));
    store16(scratch + 4, uint16_t(id + i));
    store16(scratch + 10, 0);
    store16(scratch + 10, uint16_t(~fold(sum_bytes(scratch, ihl, 0))));

    uint8_t* l4 = scratch + ihl;
    const size_t l4len = seg - ihl;
    if (tcp) {
      store32(l4 + 4, seq + uint32_t(off));
      if (i + 1 < n) l4[13] &= uint8_t(~(kTcpFin | kTcpPsh));
      if (i > 0) l4[13] &= uint8_t(~kTcpCwr);
      store16(l4 + 16, 0);
      store16(l4 + 16, uint16_t(~fold(sum_bytes(l4, l4len, pseudo + l4len))));
    } else {
      store16(l4 + 4, uint16_t(l4len));
      store16(l4 + 6, 0);
      uint16_t c = uint16_t(~fold(sum_bytes(l4, l4len, pseudo + l4len)));
      store16(l4 + 6, c == 0 ? 0xffff : c);  // 0 would mean "no checksum"
    }
    sink(ctx, scratch, seg);
  }
  return int(n);
}

}  // namespace moat
