// classifier-bench.cc: times the compiled classifier against a linear
// first-match walk (rule_matches) on random CIDR/port chains, and cross-checks
// the two on every packet it times. Built by bench/classifier.ts with
//   g++ -O2 -std=c++17 bench/classifier-bench.cc native/classifier.cc native/frame.cc
// (no Node, no N-API). Output: one JSON object per chain size on stdout.
// Also times the router's Chain::pass (chain.h, with its verdict cache) on
// the packets of one flow and of 2,048 flows.
// Usage: classifier-bench [sizes...]   (default 0 100 1000 10000)
// Syscalls: clock_gettime, write.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "../native/chain.h"
#include "../native/classifier.h"

using moat::Classifier;
using moat::PacketKey;
using moat::PortRange;
using moat::Rule;

namespace {

std::mt19937_64 rng(12345);

uint32_t rnd(uint32_t n) { return static_cast<uint32_t>(rng() % n); }

uint32_t mask_of(int bits) { return bits == 0 ? 0 : (bits >= 32 ? 0xffffffffu : ~(0xffffffffu >> bits)); }

// A random prefix: mostly /8../32, sometimes any.
void random_net(uint32_t& net, uint8_t& bits) {
  if (rnd(10) == 0) {
    net = 0;
    bits = 0;
    return;
  }
  bits = static_cast<uint8_t>(8 + rnd(25));
  net = static_cast<uint32_t>(rng()) & mask_of(bits);
}

std::vector<PortRange> random_ports() {
  std::vector<PortRange> v;
  switch (rnd(4)) {
    case 0: break;  // any
    case 1: { uint16_t p = static_cast<uint16_t>(rnd(65536)); v.push_back({p, p}); break; }
    case 2: {
      uint16_t a = static_cast<uint16_t>(rnd(65536)), b = static_cast<uint16_t>(rnd(65536));
      v.push_back({std::min(a, b), std::max(a, b)});
      break;
    }
    default:
      for (uint32_t i = 0, n = 2 + rnd(4); i < n; i++) {
        uint16_t a = static_cast<uint16_t>(rnd(65536));
        uint16_t b = static_cast<uint16_t>(std::min<uint32_t>(65535, a + rnd(100)));
        v.push_back({a, b});
      }
  }
  return v;
}

Rule random_rule() {
  Rule r;
  r.action = rnd(2) ? moat::Action::Allow : moat::Action::Deny;
  random_net(r.src, r.src_bits);
  random_net(r.dst, r.dst_bits);
  // Never both addresses open: an all-wildcard rule would shadow the rest.
  while (r.src_bits == 0 && r.dst_bits == 0) random_net(r.dst, r.dst_bits);
  const uint32_t p = rnd(10);
  r.proto = p < 4 ? 6 : p < 7 ? 17 : p < 8 ? 1 : p < 9 ? -1 : static_cast<int16_t>(rnd(256));
  if (r.proto == 6 || r.proto == 17) {
    r.sport = rnd(4) == 0 ? random_ports() : std::vector<PortRange>{};
    r.dport = random_ports();
  } else if (r.proto == 1 && rnd(2)) {
    r.icmp_type = static_cast<int16_t>(rnd(20));
  }
  return r;
}

// A packet inside rule r (any field it leaves open is random).
PacketKey packet_in(const Rule& r) {
  PacketKey k;
  k.src = (r.src & mask_of(r.src_bits)) | (static_cast<uint32_t>(rng()) & ~mask_of(r.src_bits));
  k.dst = (r.dst & mask_of(r.dst_bits)) | (static_cast<uint32_t>(rng()) & ~mask_of(r.dst_bits));
  k.proto = static_cast<uint8_t>(r.proto >= 0 ? r.proto : rnd(256));
  k.has_l4 = true;
  k.sport = r.sport.empty() ? static_cast<uint16_t>(rnd(65536)) : r.sport[0].lo;
  k.dport = r.dport.empty() ? static_cast<uint16_t>(rnd(65536)) : r.dport.back().hi;
  k.icmp_type = static_cast<uint8_t>(r.icmp_type >= 0 ? r.icmp_type : rnd(256));
  return k;
}

PacketKey random_packet() {
  PacketKey k;
  k.src = static_cast<uint32_t>(rng());
  k.dst = static_cast<uint32_t>(rng());
  const uint32_t p = rnd(4);
  k.proto = static_cast<uint8_t>(p == 0 ? 6 : p == 1 ? 17 : p == 2 ? 1 : rnd(256));
  k.has_l4 = rnd(16) != 0;
  k.sport = static_cast<uint16_t>(rnd(65536));
  k.dport = static_cast<uint16_t>(rnd(65536));
  k.icmp_type = static_cast<uint8_t>(rnd(256));
  return k;
}

int32_t linear(const std::vector<Rule>& rules, const PacketKey& k) {
  for (size_t i = 0; i < rules.size(); i++)
    if (moat::rule_matches(rules[i], k)) return static_cast<int32_t>(i);
  return -1;
}

// The 28 bytes of an IPv4 packet with key k (a transport header where k has one).
std::vector<uint8_t> packet_of(const PacketKey& k) {
  std::vector<uint8_t> b(28, 0);
  b[0] = 0x45;
  b[3] = 28;
  b[8] = 64;
  b[9] = k.proto;
  for (int i = 0; i < 4; i++) {
    b[12 + i] = uint8_t(k.src >> (24 - 8 * i));
    b[16 + i] = uint8_t(k.dst >> (24 - 8 * i));
  }
  if (k.proto == 1) {
    b[20] = k.icmp_type;
  } else {
    b[20] = uint8_t(k.sport >> 8), b[21] = uint8_t(k.sport);
    b[22] = uint8_t(k.dport >> 8), b[23] = uint8_t(k.dport);
  }
  return b;
}

double now_ns() {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch()).count());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<size_t> sizes;
  for (int i = 1; i < argc; i++) sizes.push_back(static_cast<size_t>(std::strtoul(argv[i], nullptr, 10)));
  if (sizes.empty()) sizes = {0, 100, 1000, 10000};
  long mismatches = 0;
  for (size_t n : sizes) {
    std::vector<Rule> rules;
    for (size_t i = 0; i + 1 < n; i++) rules.push_back(random_rule());
    // The last rule: a host pair the packets below aim at.
    // Redrawn until some packet inside it reaches it (no earlier rule shadows it).
    while (n > 0) {
      Rule last = random_rule();
      last.src_bits = 32;
      last.dst_bits = 32;
      last.src |= 1;
      last.dst |= 1;
      rules.push_back(last);
      int reach = 0;
      for (int i = 0; i < 16; i++) reach += linear(rules, packet_in(rules.back())) == static_cast<int32_t>(n - 1);
      if (reach == 16) break;
      rules.pop_back();
    }
    // Packets whose first match is the last rule (half) or no rule (half).
    std::vector<PacketKey> keys;
    for (int tries = 0; keys.size() < 2048 && tries < 1000000; tries++) {
      const bool aim = n > 0 && (keys.size() % 2 == 0);
      PacketKey k = aim ? packet_in(rules.back()) : random_packet();
      if (linear(rules, k) == (aim ? static_cast<int32_t>(n - 1) : -1)) keys.push_back(k);
    }

    double t0 = now_ns();
    Classifier c(rules);
    const double build_ms = (now_ns() - t0) / 1e6;
    // Rebuild a few times for a steadier build figure.
    int builds = 1;
    while (now_ns() - t0 < 3e8 && builds < 20) {
      Classifier again(rules);
      builds++;
    }
    const double build_avg_ms = (now_ns() - t0) / 1e6 / builds;

    // Cross-check and warm up.
    for (const PacketKey& k : keys)
      if (c.match(k) != linear(rules, k)) mismatches++;
    for (int i = 0; i < 20000; i++) {
      const PacketKey k = random_packet();
      if (c.match(k) != linear(rules, k)) mismatches++;
    }

    volatile int32_t sink = 0;
    size_t reps = 0;
    t0 = now_ns();
    do {
      for (const PacketKey& k : keys) sink = sink + c.match(k);
      reps++;
    } while (now_ns() - t0 < 2e8);
    const double compiled_ns = (now_ns() - t0) / static_cast<double>(reps * keys.size());
    reps = 0;
    t0 = now_ns();
    do {
      for (const PacketKey& k : keys) sink = sink + linear(rules, k);
      reps++;
    } while (now_ns() - t0 < 2e8);
    const double linear_ns = (now_ns() - t0) / static_cast<double>(reps * keys.size());

    // The router's own judgement (chain.h: key from the packet's bytes, the
    // verdict cache of a big chain, the hit counter): the packets of one flow
    // (the cache answers), and the 2,048 keys in turn (8 flows a cache slot:
    // nearly every lookup a miss).
    moat::Chain chain(rules);
    std::vector<std::vector<uint8_t>> pkts;
    for (const PacketKey& k : keys) pkts.push_back(packet_of(k));
    const auto time_chain = [&](size_t flows) {
      size_t n_pkts = 0;
      const double t = now_ns();
      do {
        for (size_t i = 0; i < pkts.size(); i++) sink = sink + chain.pass(pkts[i % flows].data(), 28);
        n_pkts += pkts.size();
      } while (now_ns() - t < 2e8);
      return (now_ns() - t) / static_cast<double>(n_pkts);
    };
    const double chain_flow_ns = pkts.empty() ? 0 : time_chain(1);
    const double chain_many_ns = pkts.empty() ? 0 : time_chain(pkts.size());

    const Classifier::Stats s = c.stats();
    std::printf(
        "{\"rules\":%zu,\"packets\":%zu,\"compiledNs\":%.1f,\"linearNs\":%.1f,\"chainFlowNs\":%.1f,\"chainManyNs\":%.1f,"
        "\"buildMs\":%.2f,\"buildAvgMs\":%.2f,"
        "\"bytes\":%zu,\"nodes\":%zu,\"leaves\":%zu,\"entries\":%zu,\"maxDepth\":%zu,\"maxLeaf\":%zu,\"capped\":%s}\n",
        n, keys.size(), compiled_ns, linear_ns, chain_flow_ns, chain_many_ns, build_ms, build_avg_ms, s.bytes, s.nodes,
        s.leaves, s.entries, s.max_depth, s.max_leaf, s.capped ? "true" : "false");
    std::fflush(stdout);
  }
  if (mismatches) {
    std::fprintf(stderr, "MISMATCH: %ld packets differ between compiled and linear\n", mismatches);
    return 1;
  }
  return 0;
}
