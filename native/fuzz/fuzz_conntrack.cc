// fuzz_conntrack.cc: libFuzzer harness for the connection table and the
// reject answers (conntrack.h, reject.h) over packets a tenant chooses.
//
// The input is split into packets (each copied into a heap block of exactly
// its size, so AddressSanitizer sees a read one byte too far) and played
// through a small table (max 64, 8 per vassal, timeouts of seconds) with a
// clock the input advances: prefetch() sees every packet raw (the router
// calls it before the packet's checks), lookup() and commit() those that
// pass ipv4_check, as router.cc does; a bounded sweep runs between packets.
// Every packet that passes ipv4_check is also answered by reject_answer()
// into a buffer of exactly kRejectMax bytes: an answer must fit, and must
// itself pass ipv4_check.
//
// Limits: packets are at most 1500 bytes here (the table reads headers
// only); the packets of one input are bounded by -max_len. Syscalls: none.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "../conntrack.h"
#include "../drops.h"
#include "../frame.h"
#include "../reject.h"

using namespace moat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  ConntrackConfig c;
  c.set = true;
  c.max = 64;
  c.max_per_vassal = 8;
  c.tcp_syn_sent = 2; c.tcp_syn_recv = 2; c.tcp_established = 5; c.tcp_fin_wait = 2;
  c.tcp_close_wait = 2; c.tcp_last_ack = 1; c.tcp_time_wait = 2; c.tcp_close = 1;
  c.udp = 1; c.udp_stream = 3; c.icmp = 1; c.generic = 4;
  Conntrack ct(c);
  uint64_t now = 1;
  while (in.remaining_bytes() > 0) {
    now += in.ConsumeIntegralInRange<uint64_t>(0, 3000000000ull);
    const uint32_t vassal = in.ConsumeIntegralInRange<uint32_t>(0, 11);
    const bool accept = in.ConsumeBool();
    const size_t n = in.ConsumeIntegralInRange<size_t>(0, 1500);
    std::vector<uint8_t> bytes = in.ConsumeBytes<uint8_t>(n);
    std::unique_ptr<uint8_t[]> pkt(new uint8_t[bytes.size() ? bytes.size() : 1]);
    if (!bytes.empty()) memcpy(pkt.get(), bytes.data(), bytes.size());
    ct.prefetch(pkt.get(), bytes.size());
    Drop why;
    if (!ipv4_check(pkt.get(), bytes.size(), &why)) continue;
    const CtLookup l = ct.lookup(pkt.get(), bytes.size(), now);
    if (l.state > kCtInvalid) abort();
    if (accept) ct.commit(l, vassal, now);
    ct.sweep(now, 16);
    std::unique_ptr<uint8_t[]> answer(new uint8_t[kRejectMax]);
    const size_t a = reject_answer(pkt.get(), bytes.size(), answer.get(), kRejectMax);
    if (a > kRejectMax) abort();
    if (a != 0) {
      std::unique_ptr<uint8_t[]> exact(new uint8_t[a]);
      memcpy(exact.get(), answer.get(), a);
      if (!ipv4_check(exact.get(), a, &why)) abort();
    }
  }
  return 0;
}
