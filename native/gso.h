// gso.h: virtio-net headers (the 10-byte struct virtio_net_hdr that a tun
// device opened with IFF_VNET_HDR puts before every packet it reads and
// expects before every packet written to it) and what the router does with
// them for a peer that takes plain packets (uWSGI, or a moat device that did
// not negotiate offloads): finish a partial checksum, and split a TSO/USO
// super-packet into IPv4 packets of at most hdr_len + gso_size bytes.
//
// Everything read here is untrusted (a vassal may write any header): every
// offset is checked against the packet length, nothing reads or writes out of
// bounds, and a header that does not describe the packet is refused.
// IPv4 only: VIRTIO_NET_HDR_GSO_TCPV4 and VIRTIO_NET_HDR_GSO_UDP_L4 over IPv4
// (ECN bit allowed); anything else is GsoError::unsupported.
// The header is in the host's byte order (legacy virtio, little-endian on
// the machines moat runs on; moat never calls TUNSETVNETBE).
#pragma once
#include <linux/if_tun.h>
// The UAPI header names a field of virtio_net_ctrl_hdr `class`, which C++
// cannot parse; renamed for the include only (moat never uses that struct).
#define class class_
#include <linux/virtio_net.h>
#undef class

#include <cstddef>
#include <cstdint>

// Older UAPI headers (Debian 12's linux-libc-dev) predate USO (Linux 6.2);
// the values are fixed by the virtio spec and the tun ABI.
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

namespace moat {

constexpr size_t kVnetHdrLen = sizeof(virtio_net_hdr);  // 10
static_assert(kVnetHdrLen == 10, "virtio_net_hdr is 10 bytes");

enum class GsoError {
  none,
  bad_header,    // flags/gso_type/hdr_len/csum offsets do not fit the packet
  bad_ip,        // not an IPv4 packet with a sane header and total length
  unsupported,   // a GSO type other than TCPV4 / UDP_L4 over IPv4
  too_many,      // more than kMaxSegments segments
};

constexpr int kMaxSegments = 128;

// Reads the header at p (len >= kVnetHdrLen); no validation.
virtio_net_hdr vnet_read(const uint8_t* p);
// Writes h at p (kVnetHdrLen bytes).
void vnet_write(uint8_t* p, const virtio_net_hdr& h);

// If h has VIRTIO_NET_HDR_F_NEEDS_CSUM: computes the ones' complement sum
// from csum_start to the end of pkt and stores it at csum_start +
// csum_offset (in place). No flag: nothing to do. False (and *err =
// bad_header) if the offsets do not fit inside pkt or csum_offset is odd.
bool vnet_finish_csum(const virtio_net_hdr& h, uint8_t* pkt, size_t len, GsoError* err);

// A packet that is not a super-packet (gso_type NONE, no ECN), made ready to
// go to a plain peer where it lies: its IPv4 header checked (checksum
// included) and its L4 checksum finished in place if h asks for it (it must
// start after the IPv4 header). gso_split's one-segment case without the
// copies. False with *err (pkt unchanged then).
bool vnet_finish_single(const virtio_net_hdr& h, uint8_t* pkt, size_t len, GsoError* err);

// Called once per segment: a complete IPv4 packet with correct IP and L4
// checksums; the bytes are valid only during the call (the caller copies).
using SegmentSink = void (*)(void* ctx, const uint8_t* pkt, size_t len);

// Splits pkt (the IPv4 packet after the header h) into plain packets and
// hands each to sink. With gso_type NONE it checks the IPv4 header (its
// checksum included), finishes the L4 checksum if needed (csum_start must not
// point into the IPv4 header; scratch must then hold len bytes) and emits the
// packet once. TCPv4: payload split at gso_size; each segment
// gets its own IPv4 total length, id (+1 per segment), header checksum, TCP
// sequence number, TCP checksum; FIN and PSH only on the last segment, CWR
// only on the first. UDP_L4: each datagram gets its own UDP length and
// checksum, IPv4 total length, id and checksum. scratch must hold at least
// hdr_len + gso_size bytes (65535 is always enough). Returns the number of
// segments emitted, or -1 with *err (nothing emitted then).
int gso_split(const virtio_net_hdr& h, const uint8_t* pkt, size_t len,
              uint8_t* scratch, size_t scratch_len,
              SegmentSink sink, void* ctx, GsoError* err);

}  // namespace moat
