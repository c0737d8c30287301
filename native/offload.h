// offload.h: virtio-net header offloads between moat peers (docs/offload.md).
//
// Two frame kinds beyond uWSGI's (frame.h modifier2):
//   kModHello (2): offload negotiation. The payload is a 20-byte IPv4 header
//     (protocol 253, TTL 1, source = the sender's address, header checksum
//     deliberately wrong) followed by the 18-byte magic block below. A uWSGI
//     router reads any modifier2 but 1 as an IPv4 packet: it may learn the
//     (right) source address from it and writes it to its tun, where the host
//     kernel drops it in ip_rcv for the bad checksum.
//   kModVnet (3): a 10-byte virtio_net_hdr and one IPv4 packet (possibly a
//     TSO/USO super-packet with a partial checksum). Sent only to a peer that
//     negotiated; payload <= 65535 bytes, header included.
// Everything parsed here is untrusted: every offset is checked against the
// length given, nothing is read beyond it.
#pragma once
#include <cstddef>
#include <cstdint>

#include "drops.h"
#include "gso.h"

namespace moat {

constexpr uint8_t kModHello = 2;
constexpr uint8_t kModVnet = 3;

// Hello layout: [0,20) IPv4 header, [20,32) "moat-offload", [32] version,
// [33] 0, [34,36) capabilities (big-endian), [36,38) sender's max frame
// payload (big-endian).
constexpr size_t kHelloLen = 38;
constexpr uint8_t kHelloVersion = 1;
constexpr uint8_t kHelloProto = 253;  // RFC 3692 experimental
constexpr uint16_t kCapCsum = 1;      // takes NEEDS_CSUM packets
constexpr uint16_t kCapTso4 = 2;      // takes GSO_TCPV4 super-packets
constexpr uint16_t kCapUso4 = 4;      // takes GSO_UDP_L4 (IPv4) super-packets
constexpr uint16_t kCapAll = kCapCsum | kCapTso4 | kCapUso4;

// The largest IPv4 packet a kModVnet frame carries.
constexpr size_t kVnetMaxPacket = 65535 - kVnetHdrLen;
// The GSO size cap set on offload tun devices (gso_max_size): a super-packet
// the kernel builds then fits one frame with room to spare.
constexpr uint32_t kTunGsoMaxSize = 65000;

// Writes a hello (kHelloLen bytes) into out.
void hello_build(uint8_t* out, uint32_t src, uint16_t caps, uint16_t max_frame);
// True if p[0..len) is a hello of ours; *caps and *max_frame then set.
bool hello_parse(const uint8_t* p, size_t len, uint16_t* caps, uint16_t* max_frame);

// Checks a kModVnet payload (header + packet, len bytes) from a peer: flags
// only NEEDS_CSUM / DATA_VALID; gso_type NONE, TCPV4 (ECN allowed) or UDP_L4;
// a checksum or GSO request that fits the packet; the packet passes
// ipv4_check (total length == the rest of the payload); a super-packet is a
// whole, unfragmented TCP/UDP packet of the matching protocol with a
// gso_size > 0. False with *why (BadVnet, or ipv4_check's reason).
bool vnet_check(const uint8_t* payload, size_t len, virtio_net_hdr* h, Drop* why);

// True if h asks for nothing (no GSO, no partial checksum): the packet can go
// to a plain peer as it is.
inline bool vnet_plain(const virtio_net_hdr& h) {
  return h.gso_type == VIRTIO_NET_HDR_GSO_NONE && !(h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM);
}

// The capability a super-packet needs from the receiving peer (0: none).
uint16_t vnet_needs(const virtio_net_hdr& h);

// The IPv4 length of each segment of a super-packet (IP + L4 header +
// gso_size), what counts toward an MTU; for a non-GSO packet, len. pkt passed
// vnet_check (or comes from our own tun).
size_t vnet_segment_len(const virtio_net_hdr& h, const uint8_t* pkt, size_t len);

}  // namespace moat
