// coalesce.h: merging runs of same-flow UDP datagrams into one USO
// super-packet (virtio_net_hdr GSO_UDP_L4) for a peer that negotiated
// offloads (docs/offload.md), so the receiving side writes N datagrams to
// its tun in one write. The kernel segments it again (__udp_gso_segment)
// or delivers it locally; segment k gets IP id first+k, the first
// datagram's header otherwise, UDP length and checksum recomputed.
//
// The run is built in place: [vnet hdr][IPv4 hdr][UDP hdr][payload 1]
// [payload 2]..., in a buffer the caller owns with room behind it. Only
// consecutive datagrams merge (an interleaved flow ends the run). Rules
// (as wireguard-go's tun/offload_linux.go, plus the kernel's limits):
//   - IPv4 without options (IHL 5), not a fragment, UDP, UDP length ==
//     IPv4 length - 20, payload > 0;
//   - the datagram's checksum is trustworthy: its vnet header says
//     NEEDS_CSUM (csum_start 20, csum_offset 6: partial, the kernel fills
//     it) or DATA_VALID, or its UDP checksum is 0 (none) or verifies;
//     otherwise it travels alone, so a bad checksum is never made good;
//   - same saddr, daddr, sport, dport, TOS, TTL, DF bit; with DF clear the
//     IP ids must be consecutive (the kernel numbers segments first+k);
//   - every payload as long as the first (gso_size) except the last,
//     which may be shorter and ends the run;
//   - at most kUsoMaxSegs datagrams (the kernel's UDP_MAX_SEGMENTS) and
//     the IPv4 super-packet at most max_len bytes.
// A run of one datagram keeps its own header and goes out unchanged.
#pragma once
#include <cstddef>
#include <cstdint>

#include "gso.h"

namespace moat {

constexpr uint32_t kUsoMaxSegs = 64;

// The UDP payload length of datagram pkt[0..len) (passed ipv4_check) with
// vnet header h if it may take part in a run, else -1.
int uso_payload(const virtio_net_hdr& h, const uint8_t* pkt, size_t len);

struct UsoRun {
  uint8_t* frame = nullptr;  // vnet header + IPv4 super-packet so far
  size_t len = 0;            // bytes at frame (header included)
  uint32_t count = 0;        // datagrams in the run; 0: no run
  uint16_t seg = 0;          // the first datagram's payload length (gso_size)
  uint16_t next_id = 0;      // the IP id the next datagram must carry (DF clear)
  bool full = false;         // a shorter datagram ended it
};

// Starts a run at frame[0..n): a vnet header and a datagram whose
// uso_payload() was payload (>= 0).
void uso_start(UsoRun* r, uint8_t* frame, size_t n, int payload);

// True if datagram pkt[0..len) with uso_payload() payload may join r
// without the IPv4 super-packet exceeding max_len bytes.
bool uso_fits(const UsoRun& r, const uint8_t* pkt, size_t len, int payload, size_t max_len);

// Appends the datagram's payload (pkt[28..len)) at frame + len: the caller
// makes sure the room is there; pkt may overlap it (memmove).
void uso_append(UsoRun* r, const uint8_t* pkt, size_t len);

// Ends the run: with two datagrams or more, writes the GSO_UDP_L4 header
// (NEEDS_CSUM, csum_start 20, csum_offset 6, hdr_len 28), the IPv4 total
// length and header checksum, the UDP length and the UDP checksum field as
// the pseudo-header sum (folded, not complemented) over that length.
// Returns the frame length (r->len); r is empty afterwards.
size_t uso_finish(UsoRun* r);

// Merges a queue of frames (frame.h: 4-byte header, then its payload) in
// place: consecutive kModVnet frames that are single datagrams of one flow
// (uso_payload() >= 0, uso_fits()) become one run each; other frames stay
// as they are, in order. Calls emit(frame, size, segs) for each resulting
// frame in order (frame: its header; segs: the datagrams merged into it
// here, 0 for a frame left as it was) and returns the queue's new length. A frame whose header
// says more than the queue holds ends the walk (the queue is the router's
// own: never expected).
template <class Emit>
size_t uso_merge_frames(uint8_t* q, size_t len, size_t max_len, Emit&& emit);

// The walk of uso_merge_frames, without the template: next(ctx, frame,
// size, segs) for each resulting frame.
size_t uso_merge_frames_cb(uint8_t* q, size_t len, size_t max_len, void* ctx,
                           void (*next)(void* ctx, uint8_t* frame, size_t size, uint32_t segs));

template <class Emit>
size_t uso_merge_frames(uint8_t* q, size_t len, size_t max_len, Emit&& emit) {
  return uso_merge_frames_cb(q, len, max_len, &emit, [](void* ctx, uint8_t* f, size_t n, uint32_t segs) {
    (*static_cast<Emit*>(ctx))(f, n, segs);
  });
}

}  // namespace moat
