// coalesce.cc: USO runs (see coalesce.h).
#include "coalesce.h"

#include <cstring>

#include "frame.h"
#include "offload.h"

namespace moat {

namespace {

constexpr size_t kIp = 20, kUdp = 8, kHdrs = kIp + kUdp;

uint32_t sum16(const uint8_t* p, size_t n, uint32_t sum) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t(p[i]) << 8) | p[i + 1];
  if (n & 1) sum += uint32_t(p[n - 1]) << 8;
  return sum;
}

uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(sum);
}

// The UDP pseudo-header sum (addresses, protocol, UDP length), unfolded.
uint32_t pseudo(const uint8_t* pkt, size_t udp_len) {
  return sum16(pkt + 12, 8, 0) + 17 + uint32_t(udp_len);
}

uint16_t be16(const uint8_t* p) { return uint16_t((p[0] << 8) | p[1]); }

void put16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}

}  // namespace

int uso_payload(const virtio_net_hdr& h, const uint8_t* pkt, size_t len) {
  if (h.gso_type != VIRTIO_NET_HDR_GSO_NONE || len <= kHdrs || len > 65535) return -1;
  if (pkt[0] != 0x45 || pkt[9] != 17) return -1;
  if (((pkt[6] & 0x3f) | pkt[7]) != 0) return -1;  // MF or a fragment offset
  if (be16(pkt + 2) != len || be16(pkt + kIp + 4) != len - kIp) return -1;
  if (ip_checksum(pkt, kIp) != 0) return -1;
  if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    if (h.csum_start != kIp || h.csum_offset != 6) return -1;
  } else if (!(h.flags & VIRTIO_NET_HDR_F_DATA_VALID) && be16(pkt + kIp + 6) != 0) {
    if (fold(sum16(pkt + kIp, len - kIp, pseudo(pkt, len - kIp))) != 0xffff) return -1;
  }
  return int(len - kHdrs);
}

void uso_start(UsoRun* r, uint8_t* frame, size_t n, int payload) {
  r->frame = frame;
  r->len = n;
  r->count = 1;
  r->seg = uint16_t(payload);
  r->next_id = uint16_t(be16(frame + kVnetHdrLen + 4) + 1);
  r->full = false;
}

bool uso_fits(const UsoRun& r, const uint8_t* pkt, size_t len, int payload, size_t max_len) {
  if (r.count == 0 || r.full || r.count >= kUsoMaxSegs || payload <= 0) return false;
  if (size_t(payload) > r.seg) return false;
  if (r.len - kVnetHdrLen + size_t(payload) > max_len) return false;
  (void)len;
  const uint8_t* f = r.frame + kVnetHdrLen;
  if (pkt[1] != f[1] || pkt[8] != f[8] || (pkt[6] & 0x40) != (f[6] & 0x40)) return false;
  if (memcmp(pkt + 12, f + 12, 8) != 0 || memcmp(pkt + kIp, f + kIp, 4) != 0) return false;
  if (!(f[6] & 0x40) && be16(pkt + 4) != r.next_id) return false;
  return true;
}

void uso_append(UsoRun* r, const uint8_t* pkt, size_t len) {
  const size_t payload = len - kHdrs;
  memmove(r->frame + r->len, pkt + kHdrs, payload);
  r->len += payload;
  r->count++;
  r->next_id++;
  if (payload < r->seg) r->full = true;
}

size_t uso_finish(UsoRun* r) {
  const size_t n = r->len;
  if (r->count >= 2) {
    virtio_net_hdr h{};
    h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h.gso_type = VIRTIO_NET_HDR_GSO_UDP_L4;
    h.hdr_len = kHdrs;
    h.gso_size = r->seg;
    h.csum_start = kIp;
    h.csum_offset = 6;
    vnet_write(r->frame, h);
    uint8_t* pkt = r->frame + kVnetHdrLen;
    const size_t total = n - kVnetHdrLen;
    put16(pkt + 2, uint16_t(total));
    put16(pkt + 10, 0);
    put16(pkt + 10, ip_checksum(pkt, kIp));
    put16(pkt + kIp + 4, uint16_t(total - kIp));
    put16(pkt + kIp + 6, fold(pseudo(pkt, total - kIp)));
  }
  *r = UsoRun();
  return n;
}

size_t uso_merge_frames_cb(uint8_t* q, size_t len, size_t max_len, void* ctx,
                           void (*next)(void* ctx, uint8_t* frame, size_t size, uint32_t segs)) {
  UsoRun run;
  size_t run_at = 0;  // the open run's frame header
  size_t w = 0;       // where the next frame goes (behind the open run, if any)
  const auto close = [&]() {
    if (run.count == 0) return;
    const uint32_t segs = run.count;
    const size_t n = uso_finish(&run);
    encode_frame_header(q + run_at, uint16_t(n), kModVnet);
    next(ctx, q + run_at, n, segs);
    w = run_at + kFrameHeaderSize + n;
  };
  size_t r = 0;
  while (r + kFrameHeaderSize <= len) {
    const FrameHeader h = decode_frame_header(q + r);
    const size_t n = h.size;
    if (r + kFrameHeaderSize + n > len) break;
    uint8_t* payload = q + r + kFrameHeaderSize;
    int pl = -1;
    if (h.mod2 == kModVnet && n > kVnetHdrLen)
      pl = uso_payload(vnet_read(payload), payload + kVnetHdrLen, n - kVnetHdrLen);
    if (pl > 0 && uso_fits(run, payload + kVnetHdrLen, n - kVnetHdrLen, pl, max_len)) {
      uso_append(&run, payload + kVnetHdrLen, n - kVnetHdrLen);  // behind the run: r is ahead of it
      r += kFrameHeaderSize + n;
      continue;
    }
    close();
    if (w != r) memmove(q + w, q + r, kFrameHeaderSize + n);
    if (pl > 0) {
      run_at = w;
      uso_start(&run, q + w + kFrameHeaderSize, n, pl);
    } else {
      next(ctx, q + w, n, 0);
      w += kFrameHeaderSize + n;
    }
    r += kFrameHeaderSize + n;
  }
  close();
  return w;
}

}  // namespace moat
