// fuzz_gso.cc: libFuzzer harness for gso.h: vnet_read/vnet_write,
// vnet_finish_csum and gso_split over arbitrary virtio-net headers + packets.
//
// Input: 10 bytes of virtio_net_hdr (host order) then the packet. The packet
// is copied into a heap block of exactly its size (AddressSanitizer sees a
// read one byte too far). Checked:
//   - gso_split's verdict equals a reference verdict written here from gso.h's
//     contract; on refusal nothing was emitted;
//   - every segment is an IPv4 packet whose total length equals its length,
//     whose header checksum verifies, and (GSO) whose TCP/UDP checksum
//     verifies with the pseudo-header, with id +1 per segment, TCP seq and
//     FIN/PSH/CWR as documented, UDP length; the payloads concatenate to the
//     original payload; the count is max(1, ceil(payload / gso_size));
//   - the split again with a scratch buffer of exactly one full segment (a
//     heap block of that size) gives the same segments, and one byte less is
//     refused with bad_header and emits nothing;
//   - vnet_finish_single agrees with gso_split's one-packet case (verdict
//     and bytes) and writes nothing when it refuses;
//   - vnet_finish_csum refuses exactly the offsets outside the packet (or an
//     odd csum_offset) and
//     otherwise writes a checksum that verifies against the pseudo-header sum
//     that was in the field, changing nothing else.
// Syscalls: none beyond libFuzzer's own.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "../gso.h"

using namespace moat;

namespace {

#define FUZZ_CHECK(c)                                                                     \
  do {                                                                                    \
    if (!(c)) {                                                                           \
      fprintf(stderr, "fuzz_gso: check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__);    \
      abort();                                                                            \
    }                                                                                     \
  } while (0)

unsigned be16(const uint8_t* p) { return (unsigned(p[0]) << 8) | p[1]; }
uint32_t be32(const uint8_t* p) { return (uint32_t(be16(p)) << 16) | be16(p + 2); }

// Plain 16-bit word sum, folded (a different loop from gso.cc's on purpose).
uint32_t sum16(const uint8_t* p, size_t n, uint32_t s = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) {
    s += be16(p + i);
    s = (s & 0xffff) + (s >> 16);
  }
  if (n & 1) s += uint32_t(p[n - 1]) << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >> 16);
  return s;
}

struct Expect {
  GsoError err = GsoError::none;
  size_t ihl = 0, hlen = 0, payload = 0, mss = 0, count = 0;
  bool tcp = false;
};

// The reference verdict: gso.h's contract and gso.cc's documented choices.
Expect reference(const virtio_net_hdr& h, const uint8_t* p, size_t len) {
  Expect e;
  const unsigned type = h.gso_type & 0x7f;
  const bool ecn = h.gso_type & 0x80;
  const bool needs = h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM;
  auto ip_sane = [&]() {
    if (len < 20 || (p[0] >> 4) != 4) return false;
    e.ihl = (p[0] & 15u) * 4;
    return e.ihl >= 20 && e.ihl <= len && be16(p + 2) == len;
  };
  if (type == VIRTIO_NET_HDR_GSO_NONE) {
    if (ecn) { e.err = GsoError::bad_header; return e; }
    if (!ip_sane() || sum16(p, e.ihl) != 0xffff) { e.err = GsoError::bad_ip; return e; }
    if (needs && (size_t(h.csum_start) + h.csum_offset + 2 > len || (h.csum_offset & 1) || h.csum_start < e.ihl)) {
      e.err = GsoError::bad_header;
      return e;
    }
    e.count = 1;
    return e;
  }
  if (type != VIRTIO_NET_HDR_GSO_TCPV4 && type != VIRTIO_NET_HDR_GSO_UDP_L4) { e.err = GsoError::unsupported; return e; }
  e.tcp = type == VIRTIO_NET_HDR_GSO_TCPV4;
  if ((ecn && !e.tcp) || h.gso_size == 0 || h.hdr_len > len) { e.err = GsoError::bad_header; return e; }
  if (!ip_sane() || (be16(p + 6) & 0x3fff) != 0) { e.err = GsoError::bad_ip; return e; }
  if (p[9] != (e.tcp ? 6 : 17)) { e.err = GsoError::bad_header; return e; }
  size_t l4h = 8;
  if (e.tcp) {
    if (e.ihl + 20 > len) { e.err = GsoError::bad_header; return e; }
    l4h = (p[e.ihl + 12] >> 4) * 4u;
    if (l4h < 20) { e.err = GsoError::bad_header; return e; }
  }
  e.hlen = e.ihl + l4h;
  if (e.hlen > len) { e.err = GsoError::bad_header; return e; }
  if (needs && (h.csum_start != e.ihl || h.csum_offset != (e.tcp ? 16u : 6u))) { e.err = GsoError::bad_header; return e; }
  e.payload = len - e.hlen;
  e.mss = h.gso_size;
  e.count = std::max<size_t>(1, (e.payload + e.mss - 1) / e.mss);
  if (e.count > size_t(kMaxSegments)) e.err = GsoError::too_many;
  return e;
}

struct Segments {
  std::vector<std::vector<uint8_t>> segs;
};

void collect(void* ctx, const uint8_t* pkt, size_t len) {
  // Every segment, whatever the type: a sane IPv4 packet, header checksum good.
  FUZZ_CHECK(len >= 20 && (pkt[0] >> 4) == 4);
  const size_t ihl = (pkt[0] & 15u) * 4;
  FUZZ_CHECK(ihl >= 20 && ihl <= len);
  FUZZ_CHECK(be16(pkt + 2) == len);
  FUZZ_CHECK(sum16(pkt, ihl) == 0xffff);
  static_cast<Segments*>(ctx)->segs.emplace_back(pkt, pkt + len);
}

// The split's segments against the original packet p (GSO types).
void check_gso(const Expect& e, const uint8_t* p, const Segments& out) {
  FUZZ_CHECK(out.segs.size() == e.count);
  const unsigned id0 = be16(p + 4);
  const uint8_t flags = e.tcp ? p[e.ihl + 13] : 0;
  size_t off = 0;
  for (size_t i = 0; i < out.segs.size(); i++) {
    const std::vector<uint8_t>& s = out.segs[i];
    const size_t plen = std::min(e.mss, e.payload - off);
    FUZZ_CHECK(s.size() == e.hlen + plen);
    FUZZ_CHECK(size_t(s[0] & 15u) * 4 == e.ihl);
    FUZZ_CHECK(be16(&s[4]) == ((id0 + i) & 0xffff));
    FUZZ_CHECK(memcmp(&s[6], p + 6, 4) == 0 && memcmp(&s[12], p + 12, e.ihl - 12) == 0);
    FUZZ_CHECK(memcmp(&s[e.hlen], p + e.hlen + off, plen) == 0);
    const size_t l4len = s.size() - e.ihl;
    const uint32_t pseudo = sum16(p + 12, 8, p[9] + uint32_t(l4len));
    FUZZ_CHECK(sum16(&s[e.ihl], l4len, pseudo) == 0xffff);
    const uint8_t* l4 = &s[e.ihl];
    if (e.tcp) {
      FUZZ_CHECK(be32(l4 + 4) == uint32_t(be32(p + e.ihl + 4) + off));
      uint8_t want = flags;
      if (i + 1 < out.segs.size()) want &= uint8_t(~0x09);
      if (i > 0) want &= uint8_t(~0x80);
      FUZZ_CHECK(l4[13] == want);
      FUZZ_CHECK(memcmp(l4, p + e.ihl, 4) == 0 && memcmp(l4 + 8, p + e.ihl + 8, 5) == 0);
      FUZZ_CHECK(memcmp(l4 + 14, p + e.ihl + 14, 2) == 0 && memcmp(l4 + 18, p + e.ihl + 18, e.hlen - e.ihl - 18) == 0);
    } else {
      FUZZ_CHECK(be16(l4 + 4) == l4len);
      FUZZ_CHECK(be16(l4 + 6) != 0);
      FUZZ_CHECK(memcmp(l4, p + e.ihl, 4) == 0);
    }
    off += plen;
  }
  FUZZ_CHECK(off == e.payload);
}

std::vector<uint8_t>& big_scratch() {
  static std::vector<uint8_t> s(65535);
  return s;
}

void check_finish_csum(const virtio_net_hdr& h, const uint8_t* p, size_t len) {
  std::unique_ptr<uint8_t[]> q(new uint8_t[len]);
  if (len) memcpy(q.get(), p, len);
  GsoError err = GsoError::too_many;
  const bool ok = vnet_finish_csum(h, q.get(), len, &err);
  if (!(h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)) {
    FUZZ_CHECK(ok && err == GsoError::none && (len == 0 || memcmp(q.get(), p, len) == 0));
    return;
  }
  const size_t start = h.csum_start, at = start + h.csum_offset;
  if (at + 2 > len || (h.csum_offset & 1)) {
    FUZZ_CHECK(!ok && err == GsoError::bad_header && (len == 0 || memcmp(q.get(), p, len) == 0));
    return;
  }
  FUZZ_CHECK(ok && err == GsoError::none);
  FUZZ_CHECK(memcmp(q.get(), p, at) == 0 && memcmp(q.get() + at + 2, p + at + 2, len - at - 2) == 0);
  // The new region sum plus the pseudo-header sum that was in the field: 0xffff.
  FUZZ_CHECK(sum16(q.get() + start, len - start, be16(p + at)) == 0xffff);
  FUZZ_CHECK(be16(q.get() + at) != 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kVnetHdrLen) return 0;
  const virtio_net_hdr h = vnet_read(data);
  uint8_t back[kVnetHdrLen];
  vnet_write(back, h);
  FUZZ_CHECK(memcmp(back, data, kVnetHdrLen) == 0);

  const size_t len = size - kVnetHdrLen;
  std::unique_ptr<uint8_t[]> pkt(new uint8_t[len]);
  if (len) memcpy(pkt.get(), data + kVnetHdrLen, len);
  const uint8_t* p = pkt.get();

  check_finish_csum(h, p, len);

  const Expect e = reference(h, p, len);
  Segments out;
  GsoError err = GsoError::none;
  const int n = gso_split(h, p, len, big_scratch().data(), big_scratch().size(), collect, &out, &err);

  // vnet_finish_single is gso_split's one-packet case done in place: the
  // same verdict and bytes for gso_type NONE, bad_header for any other, and
  // nothing written when it refuses.
  std::vector<uint8_t> in_place(p, p + len);
  GsoError single_err = GsoError::none;
  const bool single = vnet_finish_single(h, in_place.data(), len, &single_err);
  if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE) {
    FUZZ_CHECK(single == (n == 1) && single_err == err);
    if (single) FUZZ_CHECK(in_place == out.segs[0]);
  } else {
    FUZZ_CHECK(!single && single_err == GsoError::bad_header);
  }
  if (!single) FUZZ_CHECK(std::equal(in_place.begin(), in_place.end(), p));
  if (e.err != GsoError::none) {
    FUZZ_CHECK(n == -1 && err == e.err && out.segs.empty());
    return 0;
  }
  FUZZ_CHECK(n >= 1 && size_t(n) == e.count && err == GsoError::none);
  FUZZ_CHECK(memcmp(p, data + kVnetHdrLen, len) == 0);  // the input is not written

  if ((h.gso_type & 0x7f) == VIRTIO_NET_HDR_GSO_NONE) {
    FUZZ_CHECK(out.segs.size() == 1 && out.segs[0].size() == len);
    // Only the checksum field may differ (checked by check_finish_csum's rules).
    if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      const size_t at = size_t(h.csum_start) + h.csum_offset;
      FUZZ_CHECK(memcmp(out.segs[0].data(), p, at) == 0);
      FUZZ_CHECK(sum16(out.segs[0].data() + h.csum_start, len - h.csum_start, be16(p + at)) == 0xffff);
    } else {
      FUZZ_CHECK(memcmp(out.segs[0].data(), p, len) == 0);
    }
  } else {
    check_gso(e, p, out);
  }

  // The smallest scratch that must work, and one byte less, as exact heap blocks.
  const size_t need = (h.gso_type & 0x7f) == VIRTIO_NET_HDR_GSO_NONE
                          ? ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) ? len : 0)
                          : e.hlen + std::min(e.payload, e.mss);
  std::unique_ptr<uint8_t[]> tight(new uint8_t[need]);
  Segments again;
  FUZZ_CHECK(gso_split(h, p, len, tight.get(), need, collect, &again, &err) == n);
  FUZZ_CHECK(again.segs == out.segs);
  if (need > 0) {
    Segments none;
    FUZZ_CHECK(gso_split(h, p, len, tight.get(), need - 1, collect, &none, &err) == -1);
    FUZZ_CHECK(err == GsoError::bad_header && none.segs.empty());
  }
  return 0;
}
