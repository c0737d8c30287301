// offload.cc: the offload hello and kModVnet validation (see offload.h).
#include "offload.h"

#include <cstring>

#include "frame.h"

namespace moat {

namespace {
constexpr char kMagic[12] = {'m', 'o', 'a', 't', '-', 'o', 'f', 'f', 'l', 'o', 'a', 'd'};
}

void hello_build(uint8_t* out, uint32_t src, uint16_t caps, uint16_t max_frame) {
  memset(out, 0, kHelloLen);
  out[0] = 0x45;
  out[3] = uint8_t(kHelloLen);
  out[6] = 0x40;  // DF
  out[8] = 1;     // TTL 1: never forwarded even if some host accepted it
  out[9] = kHelloProto;
  for (int i = 0; i < 4; i++) out[12 + i] = out[16 + i] = uint8_t(src >> (24 - 8 * i));
  // A wrong header checksum: a kernel that gets this (from a uWSGI router
  // writing it to its tun) drops it in ip_rcv.
  const uint16_t c = ip_checksum(out, 20) ^ 0x5a5a;
  out[10] = uint8_t(c >> 8);
  out[11] = uint8_t(c);
  memcpy(out + 20, kMagic, sizeof kMagic);
  out[32] = kHelloVersion;
  out[34] = uint8_t(caps >> 8);
  out[35] = uint8_t(caps);
  out[36] = uint8_t(max_frame >> 8);
  out[37] = uint8_t(max_frame);
}

bool hello_parse(const uint8_t* p, size_t len, uint16_t* caps, uint16_t* max_frame) {
  if (len < kHelloLen || p[0] != 0x45 || p[9] != kHelloProto) return false;
  if (memcmp(p + 20, kMagic, sizeof kMagic) != 0 || p[32] != kHelloVersion) return false;
  *caps = uint16_t((p[34] << 8) | p[35]);
  *max_frame = uint16_t((p[36] << 8) | p[37]);
  return true;
}

uint16_t vnet_needs(const virtio_net_hdr& h) {
  switch (h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN) {
    case VIRTIO_NET_HDR_GSO_TCPV4: return kCapTso4 | kCapCsum;
    case VIRTIO_NET_HDR_GSO_UDP_L4: return kCapUso4 | kCapCsum;
    default: return (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) ? kCapCsum : 0;
  }
}

bool vnet_check(const uint8_t* payload, size_t len, virtio_net_hdr* out, Drop* why) {
  *why = Drop::BadVnet;
  if (len < kVnetHdrLen) return false;
  const virtio_net_hdr h = vnet_read(payload);
  const uint8_t* pkt = payload + kVnetHdrLen;
  const size_t plen = len - kVnetHdrLen;
  if (!ipv4_check(pkt, plen, why)) return false;
  *why = Drop::BadVnet;
  if (h.flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID)) return false;
  const size_t ihl = size_t(pkt[0] & 0x0f) * 4;
  if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    if (h.csum_start < ihl || size_t(h.csum_start) + h.csum_offset + 2 > plen) return false;
  }
  const uint8_t gso = h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  if (gso != VIRTIO_NET_HDR_GSO_NONE) {
    const bool tcp = gso == VIRTIO_NET_HDR_GSO_TCPV4;
    if (!tcp && gso != VIRTIO_NET_HDR_GSO_UDP_L4) return false;
    if (!tcp && (h.gso_type & VIRTIO_NET_HDR_GSO_ECN)) return false;
    if (!(h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || h.csum_start != ihl) return false;
    if (pkt[9] != (tcp ? 6 : 17) || h.gso_size == 0) return false;
    if (((pkt[6] & 0x3f) | pkt[7]) != 0) return false;  // MF or a fragment offset
    if (h.csum_offset != (tcp ? 16 : 6)) return false;
    size_t l4 = 8;
    if (tcp) {
      if (plen < ihl + 20) return false;
      l4 = size_t(pkt[ihl + 12] >> 4) * 4;
      if (l4 < 20) return false;
    }
    if (ihl + l4 > plen) return false;
    // At most kMaxSegments segments: a tiny gso_size would make the host
    // kernel cut one frame into tens of thousands of packets. The tuns'
    // gso_max_segs keep the kernels' own super-packets within it.
    const size_t data = plen - ihl - l4;
    if ((data + h.gso_size - 1) / h.gso_size > size_t(kMaxSegments)) return false;
  } else if (h.gso_size != 0) {
    return false;
  }
  *out = h;
  return true;
}

size_t vnet_segment_len(const virtio_net_hdr& h, const uint8_t* pkt, size_t len) {
  const uint8_t gso = h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  if (gso == VIRTIO_NET_HDR_GSO_NONE || len < 20) return len;
  const size_t ihl = size_t(pkt[0] & 0x0f) * 4;
  size_t l4 = 8;
  if (gso == VIRTIO_NET_HDR_GSO_TCPV4) {
    if (len < ihl + 20) return len;
    l4 = size_t(pkt[ihl + 12] >> 4) * 4;
  }
  const size_t seg = ihl + l4 + h.gso_size;
  return seg < len ? seg : len;
}

}  // namespace moat
