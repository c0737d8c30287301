// fuzz_frame.cc: libFuzzer harness for the frame reassembler and the IPv4
// checks a peer's packets go through (frame.h): next_frame, ipv4_check and
// ipv4_key over arbitrary byte streams.
//
// The input picks a payload limit, then is split into a byte stream and a
// list of chunk sizes. The stream is reassembled twice:
//   - one shot: next_frame over the whole stream;
//   - chunked: as the router's on_peer_readable does it (a bounded input
//     buffer of max(limit + 4, 64 KiB), chunks of fuzzer-chosen sizes read
//     into its free space, whole frames taken from the front, the partial
//     rest moved to the front).
// Both must yield the same frames and stop at the same place (oversize, or
// a partial frame at the end); any difference aborts. Every frame's payload
// is copied into a heap block of exactly its size before ipv4_check and
// ipv4_key look at it, so AddressSanitizer sees a read one byte too far.
// ipv4_check's verdict is compared with a reference written here.
// Offload frames (modifier2 3, offload.h) go through vnet_check the same way,
// and those it accepts through vnet_segment_len and gso_split (every segment
// must pass ipv4_check).
//
// Limits: the chunked driver mirrors router.cc's loop (it is not that code,
// which lives inside the loop thread's state); the frames of one input are
// bounded by the input size (libFuzzer's -max_len).
// Syscalls: none beyond libFuzzer's own.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "../frame.h"
#include "../offload.h"

using namespace moat;

namespace {

#define FUZZ_CHECK(c)                                                   \
  do {                                                                  \
    if (!(c)) {                                                         \
      fprintf(stderr, "fuzz_frame: check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); \
      abort();                                                          \
    }                                                                   \
  } while (0)

struct Seen {
  uint8_t mod1, mod2;
  std::vector<uint8_t> payload;
  bool operator==(const Seen& o) const { return mod1 == o.mod1 && mod2 == o.mod2 && payload == o.payload; }
};

enum class End { Partial, Oversize };

// The reference IPv4 check (frame.h's contract, written independently).
bool ref_ipv4_ok(const uint8_t* p, size_t len, Drop* why) {
  if (len < 1) { *why = Drop::Short; return false; }
  if ((p[0] >> 4) == 6) { *why = Drop::Ipv6; return false; }
  if ((p[0] >> 4) != 4) { *why = Drop::NotIpv4; return false; }
  if (len < 20) { *why = Drop::Short; return false; }
  size_t ihl = (p[0] & 15u) * 4u;
  if (ihl < 20 || ihl > len) { *why = Drop::BadHeader; return false; }
  size_t total = size_t(p[2]) * 256 + p[3];
  if (total != len) { *why = Drop::BadLength; return false; }
  return true;
}

void segment_sink(void*, const uint8_t* pkt, size_t len) {
  Drop why;
  FUZZ_CHECK(ipv4_check(pkt, len, &why));
}

// A kModVnet payload as the router takes it: checked on an exact-size copy;
// if accepted, its segment length is within the packet and splitting it
// stays in bounds and yields IPv4 packets.
void check_vnet(const uint8_t* payload, size_t len) {
  std::unique_ptr<uint8_t[]> exact(new uint8_t[len ? len : 1]);
  if (len) memcpy(exact.get(), payload, len);
  virtio_net_hdr h;
  Drop why;
  uint16_t caps, max;
  (void)hello_parse(exact.get(), len, &caps, &max);
  if (!vnet_check(exact.get(), len, &h, &why)) return;
  const uint8_t* pkt = exact.get() + kVnetHdrLen;
  const size_t plen = len - kVnetHdrLen;
  FUZZ_CHECK(vnet_segment_len(h, pkt, plen) <= plen);
  static std::vector<uint8_t> scratch(65536);
  GsoError e;
  (void)gso_split(h, pkt, plen, scratch.data(), scratch.size(), segment_sink, nullptr, &e);
}

void check_packet(const uint8_t* payload, size_t len) {
  // An exact-size copy: a read past len is a heap-buffer-overflow.
  // (new uint8_t[0] is a valid block that ASan flags on any access.)
  std::unique_ptr<uint8_t[]> pkt(new uint8_t[len]);
  if (len) memcpy(pkt.get(), payload, len);
  const uint8_t* p = pkt.get();
  Drop why = Drop::Count, ref_why = Drop::Count;
  const bool ok = ipv4_check(p, len, &why);
  const bool ref = ref_ipv4_ok(p, len, &ref_why);
  FUZZ_CHECK(ok == ref);
  if (!ok) {
    FUZZ_CHECK(why == ref_why);
    return;
  }
  const PacketKey k = ipv4_key(p, len);
  FUZZ_CHECK(k.src == ipv4_src(p) && k.dst == ipv4_dst(p));
  FUZZ_CHECK(k.proto == p[9]);
  const size_t ihl = (p[0] & 15u) * 4u;
  const bool first_fragment = (((p[6] & 0x1f) << 8) | p[7]) == 0;
  if (k.has_l4) {
    FUZZ_CHECK(first_fragment);
    if (k.proto == 6 || k.proto == 17) {
      FUZZ_CHECK(len - ihl >= 4);
      FUZZ_CHECK(k.sport == ((p[ihl] << 8) | p[ihl + 1]));
      FUZZ_CHECK(k.dport == ((p[ihl + 2] << 8) | p[ihl + 3]));
    } else {
      FUZZ_CHECK(k.proto == 1 && len - ihl >= 1 && k.icmp_type == p[ihl]);
    }
  } else {
    // No transport header only when there is none to read.
    const bool could = first_fragment && (((k.proto == 6 || k.proto == 17) && len - ihl >= 4) ||
                                          (k.proto == 1 && len - ihl >= 1));
    FUZZ_CHECK(!could);
  }
}

// next_frame over the whole stream.
End one_shot(const uint8_t* s, size_t n, size_t limit, std::vector<Seen>* out, size_t* rest) {
  size_t off = 0;
  for (;;) {
    FrameHeader h{};
    const FrameStatus st = next_frame(s + off, n - off, limit, &h);
    if (st == FrameStatus::NeedMore) { *rest = n - off; return End::Partial; }
    if (st == FrameStatus::Oversize) {
      FUZZ_CHECK(n - off >= kFrameHeaderSize);
      FUZZ_CHECK(decode_frame_header(s + off).size > limit);
      *rest = n - off;
      return End::Oversize;
    }
    FUZZ_CHECK(st == FrameStatus::Ok);
    FUZZ_CHECK(h.size <= limit);
    FUZZ_CHECK(kFrameHeaderSize + h.size <= n - off);
    out->push_back(Seen{h.mod1, h.mod2, std::vector<uint8_t>(s + off + 4, s + off + 4 + h.size)});
    off += kFrameHeaderSize + h.size;
  }
}

// The router's way: a fixed buffer, reads of fuzzer-chosen sizes.
End chunked(const uint8_t* s, size_t n, size_t limit, const std::vector<size_t>& chunks,
            std::vector<Seen>* out, size_t* rest) {
  const size_t cap = std::max<size_t>(limit + kFrameHeaderSize, 65536);
  // Exactly cap bytes, so ASan catches a write past the buffer.
  std::unique_ptr<uint8_t[]> in(new uint8_t[cap]);
  size_t in_len = 0, fed = 0, ci = 0;
  while (fed < n) {
    // A read() gets min(chunk, free space, bytes left).
    size_t want = chunks.empty() ? n : chunks[ci++ % chunks.size()];
    if (want == 0) want = 1;
    const size_t room = cap - in_len;
    FUZZ_CHECK(room > 0);  // a whole frame always fits, so the buffer never fills up
    const size_t take = std::min({want, room, n - fed});
    memcpy(in.get() + in_len, s + fed, take);
    in_len += take;
    fed += take;
    size_t off = 0;
    for (;;) {
      FrameHeader h{};
      const FrameStatus st = next_frame(in.get() + off, in_len - off, limit, &h);
      if (st == FrameStatus::NeedMore) break;
      if (st == FrameStatus::Oversize) { *rest = in_len - off + (n - fed); return End::Oversize; }
      out->push_back(Seen{h.mod1, h.mod2, std::vector<uint8_t>(in.get() + off + 4, in.get() + off + 4 + h.size)});
      off += kFrameHeaderSize + h.size;
    }
    if (off > 0) {
      memmove(in.get(), in.get() + off, in_len - off);
      in_len -= off;
    }
    // What is left is a partial frame: shorter than a header, or a header
    // within the limit whose payload has not all arrived.
    FUZZ_CHECK(in_len < kFrameHeaderSize || decode_frame_header(in.get()).size + kFrameHeaderSize > in_len);
  }
  *rest = in_len;
  return End::Partial;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  // The limit: the router's usual ones, or anything 0..65535.
  size_t limit;
  switch (fdp.ConsumeIntegralInRange<int>(0, 4)) {
    case 0: limit = kUwsgiMaxPayload; break;
    case 1: limit = 1500; break;
    case 2: limit = kMaxFramePayload; break;
    case 3: limit = 576; break;
    default: limit = fdp.ConsumeIntegralInRange<size_t>(0, kMaxFramePayload); break;
  }
  std::vector<size_t> chunks(fdp.ConsumeIntegralInRange<size_t>(0, 16));
  for (size_t& c : chunks) c = fdp.ConsumeIntegralInRange<size_t>(1, 70000);
  const std::vector<uint8_t> stream = fdp.ConsumeRemainingBytes<uint8_t>();

  // A zero-length stream must not be touched at all.
  FrameHeader h{};
  FUZZ_CHECK(next_frame(stream.data(), 0, limit, &h) == FrameStatus::NeedMore);

  std::vector<Seen> a, b;
  size_t rest_a = 0, rest_b = 0;
  // Exact-size copy of the stream for the one-shot parse.
  std::unique_ptr<uint8_t[]> exact(new uint8_t[stream.size()]);
  if (!stream.empty()) memcpy(exact.get(), stream.data(), stream.size());
  const End ea = one_shot(exact.get(), stream.size(), limit, &a, &rest_a);
  const End eb = chunked(stream.data(), stream.size(), limit, chunks, &b, &rest_b);
  FUZZ_CHECK(ea == eb);
  FUZZ_CHECK(a.size() == b.size());
  for (size_t i = 0; i < a.size(); i++) FUZZ_CHECK(a[i] == b[i]);
  FUZZ_CHECK(rest_a == rest_b);

  for (const Seen& f : a) {
    if (f.mod1 == 0 && f.mod2 == kModPacket) check_packet(f.payload.data(), f.payload.size());
    if (f.mod1 == 0 && f.mod2 == kModVnet) check_vnet(f.payload.data(), f.payload.size());
  }
  // The raw stream as one packet too (the down direction: what a tun read gives).
  check_packet(stream.data(), stream.size());
  return 0;
}
