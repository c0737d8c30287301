// fuzz_classifier.cc: libFuzzer harness for the compiled firewall chain
// (classifier.h). The input builds a chain of rules and a list of packet
// keys; Classifier::match(k) must equal the first-match walk over
// rule_matches (rule.h's reference semantics) for every key. Any difference
// prints the chain and the key and aborts.
//
// Rules respect rule.h's contract (networks masked to their prefix, bits
// 0..32, lo <= hi in port ranges, ports only with tcp/udp, an ICMP type only
// with icmp). Keys are drawn near the rules' own values (a rule's network
// with fuzzer-chosen host bits, a port at or next to a range's edge) as well
// as anywhere, so matches and near misses are both common.
// Limits: at most 256 rules (usually 40 or fewer) and 256 keys per input.
// Syscalls: none beyond libFuzzer's own.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../classifier.h"

using namespace moat;

namespace {

uint32_t mask_of(uint8_t bits) { return bits == 0 ? 0 : bits >= 32 ? 0xffffffffu : ~(0xffffffffu >> bits); }

// A small pool of addresses and prefixes so that rules overlap often.
uint32_t pick_addr(FuzzedDataProvider& f, const std::vector<Rule>& rules) {
  switch (f.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: return f.ConsumeIntegral<uint32_t>();
    case 1: return 0x0a000000u | f.ConsumeIntegralInRange<uint32_t>(0, 0x3ff);  // 10.0.0.0/22
    case 2: return 0xc0a80000u | f.ConsumeIntegral<uint8_t>();                   // 192.168.0.x
    default:
      if (rules.empty()) return 0;
      const Rule& r = rules[f.ConsumeIntegralInRange<size_t>(0, rules.size() - 1)];
      return f.ConsumeBool() ? r.src : r.dst;
  }
}

std::vector<PortRange> pick_ranges(FuzzedDataProvider& f) {
  std::vector<PortRange> v(f.ConsumeIntegralInRange<size_t>(0, 4));
  for (PortRange& r : v) {
    uint16_t a = f.ConsumeBool() ? f.ConsumeIntegralInRange<uint16_t>(0, 100) : f.ConsumeIntegral<uint16_t>();
    uint16_t b = f.ConsumeBool() ? a : uint16_t(a + f.ConsumeIntegralInRange<uint16_t>(0, 1000));
    if (b < a) b = 65535;
    r = PortRange{a, b};
  }
  return v;
}

Rule pick_rule(FuzzedDataProvider& f, const std::vector<Rule>& rules) {
  Rule r;
  r.action = f.ConsumeBool() ? Action::Deny : Action::Allow;
  r.src_bits = f.ConsumeIntegralInRange<uint8_t>(0, 32);
  r.src = pick_addr(f, rules) & mask_of(r.src_bits);
  r.dst_bits = f.ConsumeIntegralInRange<uint8_t>(0, 32);
  r.dst = pick_addr(f, rules) & mask_of(r.dst_bits);
  switch (f.ConsumeIntegralInRange<int>(0, 5)) {
    case 0: r.proto = -1; break;
    case 1: r.proto = 1; break;
    case 2: r.proto = 6; break;
    case 3: r.proto = 17; break;
    default: r.proto = f.ConsumeIntegral<uint8_t>(); break;
  }
  if (r.proto == 6 || r.proto == 17) {
    r.sport = pick_ranges(f);
    r.dport = pick_ranges(f);
  } else if (r.proto == 1 && f.ConsumeBool()) {
    r.icmp_type = f.ConsumeIntegral<uint8_t>();
  }
  return r;
}

uint16_t pick_port(FuzzedDataProvider& f, const std::vector<PortRange>& ranges) {
  if (ranges.empty() || f.ConsumeBool()) return f.ConsumeIntegral<uint16_t>();
  const PortRange& r = ranges[f.ConsumeIntegralInRange<size_t>(0, ranges.size() - 1)];
  switch (f.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: return r.lo;
    case 1: return r.hi;
    case 2: return uint16_t(r.lo - 1);
    default: return uint16_t(r.hi + 1);
  }
}

PacketKey pick_key(FuzzedDataProvider& f, const std::vector<Rule>& rules) {
  PacketKey k{};
  const Rule* near = rules.empty() || f.ConsumeBool() ? nullptr
                     : &rules[f.ConsumeIntegralInRange<size_t>(0, rules.size() - 1)];
  if (near) {
    k.src = near->src | (f.ConsumeIntegral<uint32_t>() & ~mask_of(near->src_bits));
    k.dst = near->dst | (f.ConsumeIntegral<uint32_t>() & ~mask_of(near->dst_bits));
    if (f.ConsumeBool()) k.src ^= 1u << f.ConsumeIntegralInRange<int>(0, 31);  // a near miss
    k.proto = near->proto >= 0 && f.ConsumeBool() ? uint8_t(near->proto) : f.ConsumeIntegral<uint8_t>();
  } else {
    k.src = pick_addr(f, rules);
    k.dst = pick_addr(f, rules);
    k.proto = f.ConsumeBool() ? uint8_t(f.PickValueInArray({1, 6, 17})) : f.ConsumeIntegral<uint8_t>();
  }
  // A key as ipv4_key makes it: ports only for tcp/udp, a type only for icmp.
  k.has_l4 = f.ConsumeIntegralInRange<int>(0, 7) != 0;
  if (k.has_l4 && (k.proto == 6 || k.proto == 17)) {
    k.sport = pick_port(f, near ? near->sport : std::vector<PortRange>{});
    k.dport = pick_port(f, near ? near->dport : std::vector<PortRange>{});
  } else if (k.has_l4 && k.proto == 1) {
    k.icmp_type = near && near->icmp_type >= 0 && f.ConsumeBool() ? uint8_t(near->icmp_type) : f.ConsumeIntegral<uint8_t>();
  } else if (k.has_l4 && f.ConsumeBool()) {
    k.has_l4 = false;
  }
  return k;
}

void print_ranges(const std::vector<PortRange>& v) {
  for (const PortRange& r : v) fprintf(stderr, " %u-%u", r.lo, r.hi);
}

[[noreturn]] void report(const std::vector<Rule>& rules, const PacketKey& k, int32_t got, int32_t want) {
  fprintf(stderr, "fuzz_classifier: match() = %d, reference first match = %d\n", got, want);
  fprintf(stderr, "key: src=%08x dst=%08x proto=%u has_l4=%d sport=%u dport=%u icmp_type=%u\n", k.src, k.dst,
          k.proto, k.has_l4, k.sport, k.dport, k.icmp_type);
  for (size_t i = 0; i < rules.size(); i++) {
    const Rule& r = rules[i];
    fprintf(stderr, "rule %zu: %s %08x/%u %08x/%u proto=%d icmp=%d sport[", i, r.action == Action::Deny ? "deny" : "allow",
            r.src, r.src_bits, r.dst, r.dst_bits, r.proto, r.icmp_type);
    print_ranges(r.sport);
    fprintf(stderr, " ] dport[");
    print_ranges(r.dport);
    fprintf(stderr, " ]\n");
  }
  abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider f(data, size);
  std::vector<Rule> rules;
  // Mostly short chains (a compile per input is the cost); now and then a long one.
  const size_t nrules = f.ConsumeIntegralInRange<size_t>(0, f.ConsumeIntegralInRange<int>(0, 15) == 0 ? 256 : 40);
  for (size_t i = 0; i < nrules && f.remaining_bytes() > 0; i++) rules.push_back(pick_rule(f, rules));
  const size_t nkeys = f.ConsumeIntegralInRange<size_t>(1, 256);
  std::vector<PacketKey> keys;
  for (size_t i = 0; i < nkeys; i++) keys.push_back(pick_key(f, rules));

  const std::vector<Rule> copy = rules;
  const Classifier c(std::move(rules));
  if (c.size() != copy.size()) abort();
  for (const PacketKey& k : keys) {
    int32_t want = -1;
    for (size_t i = 0; i < copy.size(); i++)
      if (rule_matches(copy[i], k)) { want = int32_t(i); break; }
    const int32_t got = c.match(k);
    if (got != want) report(copy, k, got, want);
  }
  return 0;
}
