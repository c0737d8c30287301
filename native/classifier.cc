// classifier.cc: first-match over a chain (placeholder: linear walk).
#include "classifier.h"

namespace moat {

static bool in_ranges(const std::vector<PortRange>& ranges, uint16_t v) {
  if (ranges.empty()) return true;
  for (const PortRange& r : ranges)
    if (v >= r.lo && v <= r.hi) return true;
  return false;
}

static bool addr_matches(uint32_t net, uint8_t bits, uint32_t a) {
  if (net == 0 || bits == 0) return true;  // 0.0.0.0 matches any (uWSGI)
  const uint32_t mask = bits >= 32 ? 0xffffffffu : ~(0xffffffffu >> bits);
  return (a & mask) == net;
}

bool rule_matches(const Rule& r, const PacketKey& k) {
  if (!addr_matches(r.src, r.src_bits, k.src)) return false;
  if (!addr_matches(r.dst, r.dst_bits, k.dst)) return false;
  if (r.proto >= 0 && r.proto != k.proto) return false;
  const bool wants_l4 = !r.sport.empty() || !r.dport.empty() || r.icmp_type >= 0;
  if (!wants_l4) return true;
  if (!k.has_l4) return false;
  if (r.icmp_type >= 0 && r.icmp_type != k.icmp_type) return false;
  return in_ranges(r.sport, k.sport) && in_ranges(r.dport, k.dport);
}

Classifier::Classifier(std::vector<Rule> rules) : rules_(std::move(rules)) {}
Classifier::~Classifier() {}

int32_t Classifier::match(const PacketKey& k) const {
  for (size_t i = 0; i < rules_.size(); i++)
    if (rule_matches(rules_[i], k)) return static_cast<int32_t>(i);
  return -1;
}

}  // namespace moat
