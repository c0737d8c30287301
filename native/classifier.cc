// classifier.cc: first-match over a firewall chain, compiled into a decision
// tree so a lookup costs O(depth + a short leaf scan) instead of a walk over
// every rule.
//
// Design (HyperSplit-style): every rule is a product of six integer
// dimensions, each a union of inclusive intervals:
//   0 src      0..2^32-1   a prefix is one interval
//   1 dst      0..2^32-1
//   2 proto    0..255
//   3 sport'   0..65536    65536 stands for "no transport header"
//   4 dport'   0..65536
//   5 icmp'    0..256      256 stands for "no transport header"
// A rule that names no port or ICMP type covers the sentinels; one that does
// covers only real values, so the has_l4 == false case needs no special code.
// This mapping is exact: a key matches a rule iff each mapped field lies in the
// rule's interval union (see compile_rule). Port lists are kept as sorted,
// merged interval lists, never expanded into a cross product.
//
// The tree splits the key space with binary cuts "field[d] <= x". A node's
// rule list holds, in chain order, every rule that intersects its box; the
// cut is chosen among the rules' interval edges to keep both halves small and
// replicate few rules. Priority pruning keeps a list only up to the first rule
// that covers the whole box (nothing after it can ever be first), so a leaf
// whose first rule covers its box answers without checking anything. Other
// leaves hold at most kLeafSize rules, checked in order against the key.
// Why a tree and not per-field bitsets: bitset intersection is still O(n/64)
// words per packet (157 words per field at 10k rules); a tree is O(log n) on
// the rule sets a router sees, and its leaves keep the answer exact.
//
// Limits: a depth cap and budgets on nodes, leaf entries and build work (rule
// visits) bound build time and memory for adversarial chains; where a budget stops splitting, the node
// becomes a leaf holding all its candidate rules, scanned linearly: slower,
// never wrong. Immutable after construction; match() reads only.
// Syscalls: none (heap allocation only).
#include "classifier.h"

#include <algorithm>

namespace moat {

// ---------------------------------------------------------------------------
// The reference semantics: a linear first-match walk uses this.

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

// ---------------------------------------------------------------------------
// The compiled form.

namespace {

constexpr int kDims = 6;
constexpr int kSport = 3, kDport = 4;
constexpr uint32_t kNoL4Port = 65536;
constexpr uint32_t kNoL4Icmp = 256;
constexpr uint32_t kDimMax[kDims] = {0xffffffffu, 0xffffffffu, 255, kNoL4Port, kNoL4Port, kNoL4Icmp};

constexpr size_t kLeafSize = 8;     // rules a leaf may hold before we split it
constexpr size_t kSample = 256;     // rules a big node looks at to choose its cut
constexpr int kMaxDepth = 48;

struct Interval {
  uint32_t lo, hi;
};

// A rule as six interval unions. Dimensions other than sport'/dport' are a
// single interval; lo/hi are the bounding interval of every dimension, and the
// exact port lists (when longer than one interval) live in Compiled::ports.
struct CRule {
  uint32_t lo[kDims];
  uint32_t hi[kDims];
  uint32_t ports_off[2];  // sport', dport' lists in Compiled::ports
  uint32_t ports_n[2];
  int32_t index;          // position in the chain
};

struct Node {
  uint32_t point;   // go left when key[dim] <= point
  uint32_t dim;
  int32_t child[2]; // >= 0: node; < 0: ~leaf
};

struct Leaf {
  uint32_t begin, end;  // candidates to check, in chain order, in Compiled::cand
  int32_t sure;         // the answer when nothing in [begin, end) matched
};

// Maps a packet key to the six dimensions.
inline void key_point(const PacketKey& k, uint32_t v[kDims]) {
  v[0] = k.src;
  v[1] = k.dst;
  v[2] = k.proto;
  if (k.has_l4) {
    v[3] = k.sport;
    v[4] = k.dport;
    v[5] = k.icmp_type;
  } else {
    v[3] = kNoL4Port;
    v[4] = kNoL4Port;
    v[5] = kNoL4Icmp;
  }
}

// Sorted, merged, non-empty ranges; false when a non-empty list has no valid
// range (then the rule can never match: rule_matches finds no range holding v).
bool normalise_ports(const std::vector<PortRange>& in, std::vector<Interval>& out) {
  out.clear();
  if (in.empty()) {
    out.push_back({0, 65535});
    return true;
  }
  for (const PortRange& r : in)
    if (r.lo <= r.hi) out.push_back({r.lo, r.hi});
  if (out.empty()) return false;
  std::sort(out.begin(), out.end(), [](const Interval& a, const Interval& b) { return a.lo < b.lo; });
  size_t w = 0;
  for (size_t i = 1; i < out.size(); i++) {
    if (out[i].lo <= out[w].hi + 1) {
      out[w].hi = std::max(out[w].hi, out[i].hi);
    } else {
      out[++w] = out[i];
    }
  }
  out.resize(w + 1);
  return true;
}

// An address field as an interval; false when no address can match (host bits
// set in the network: (a & mask) == net is then never true).
bool addr_interval(uint32_t net, uint8_t bits, uint32_t& lo, uint32_t& hi) {
  if (net == 0 || bits == 0) {
    lo = 0;
    hi = 0xffffffffu;
    return true;
  }
  const uint32_t mask = bits >= 32 ? 0xffffffffu : ~(0xffffffffu >> bits);
  if ((net & ~mask) != 0) return false;
  lo = net;
  hi = net | ~mask;
  return true;
}

}  // namespace

struct Classifier::Compiled {
  std::vector<CRule> rules;       // only rules that can match something
  std::vector<Interval> ports;    // exact sport'/dport' lists
  std::vector<Node> nodes;
  std::vector<Leaf> leaves;
  std::vector<uint32_t> cand;     // positions in rules
  int32_t root = -1;
  Stats stats;

  // Rule position p's interval list in dimension d (a pointer and a count).
  const Interval* list(uint32_t p, int d, uint32_t& n) const {
    const CRule& r = rules[p];
    if ((d == kSport || d == kDport) && r.ports_n[d - kSport] > 1) {
      n = r.ports_n[d - kSport];
      return &ports[r.ports_off[d - kSport]];
    }
    n = 1;
    return nullptr;
  }

  bool intersects(uint32_t p, int d, uint32_t lo, uint32_t hi) const {
    const CRule& r = rules[p];
    if (r.hi[d] < lo || r.lo[d] > hi) return false;
    uint32_t n;
    const Interval* iv = list(p, d, n);
    if (!iv) return true;
    for (uint32_t i = 0; i < n; i++)
      if (iv[i].hi >= lo && iv[i].lo <= hi) return true;
    return false;
  }

  // Does one interval of the rule hold all of [lo, hi]? (Lists are merged, so
  // a union of several cannot cover a contiguous range one does not.)
  bool covers(uint32_t p, int d, uint32_t lo, uint32_t hi) const {
    const CRule& r = rules[p];
    if (r.lo[d] > lo || r.hi[d] < hi) return false;
    uint32_t n;
    const Interval* iv = list(p, d, n);
    if (!iv) return true;
    for (uint32_t i = 0; i < n; i++)
      if (iv[i].lo <= lo && iv[i].hi >= hi) return true;
    return false;
  }

  bool matches(uint32_t p, const uint32_t v[kDims]) const {
    const CRule& r = rules[p];
    for (int d = 0; d < kDims; d++)
      if (v[d] < r.lo[d] || v[d] > r.hi[d]) return false;
    for (int j = 0; j < 2; j++) {
      if (r.ports_n[j] <= 1) continue;
      const Interval* iv = &ports[r.ports_off[j]];
      const uint32_t x = v[kSport + j];
      bool in = false;
      for (uint32_t i = 0; i < r.ports_n[j] && !in; i++) in = x >= iv[i].lo && x <= iv[i].hi;
      if (!in) return false;
    }
    return true;
  }

  void compile_rule(const Rule& r, int32_t index);
  void build_tree();
  class Builder;
};

// Appends rule r as a CRule unless it can match nothing.
void Classifier::Compiled::compile_rule(const Rule& r, int32_t index) {
  CRule c{};
  c.index = index;
  if (!addr_interval(r.src, r.src_bits, c.lo[0], c.hi[0])) return;
  if (!addr_interval(r.dst, r.dst_bits, c.lo[1], c.hi[1])) return;
  if (r.proto < 0) {
    c.lo[2] = 0;
    c.hi[2] = 255;
  } else if (r.proto > 255) {
    return;  // a packet's protocol is one byte
  } else {
    c.lo[2] = c.hi[2] = static_cast<uint32_t>(r.proto);
  }
  const bool wants_l4 = !r.sport.empty() || !r.dport.empty() || r.icmp_type >= 0;
  if (!wants_l4) {
    for (int d = 3; d < kDims; d++) {
      c.lo[d] = 0;
      c.hi[d] = kDimMax[d];
    }
    rules.push_back(c);
    return;
  }
  if (r.icmp_type > 255) return;
  c.lo[5] = r.icmp_type < 0 ? 0 : static_cast<uint32_t>(r.icmp_type);
  c.hi[5] = r.icmp_type < 0 ? 255 : static_cast<uint32_t>(r.icmp_type);
  std::vector<Interval> iv;
  for (int j = 0; j < 2; j++) {
    if (!normalise_ports(j == 0 ? r.sport : r.dport, iv)) return;
    c.lo[kSport + j] = iv.front().lo;
    c.hi[kSport + j] = iv.back().hi;
    c.ports_n[j] = static_cast<uint32_t>(iv.size());
    c.ports_off[j] = 0;
    if (iv.size() > 1) {
      c.ports_off[j] = static_cast<uint32_t>(ports.size());
      ports.insert(ports.end(), iv.begin(), iv.end());
    }
  }
  rules.push_back(c);
}

namespace {

struct Box {
  uint32_t lo[kDims];
  uint32_t hi[kDims];
};

struct Split {
  int dim = -1;
  uint32_t point = 0;
  uint64_t cost = UINT64_MAX;
};

}  // namespace

// Builds the tree depth first. Positions are indices into Compiled::rules,
// which are in chain order, so an ascending list is a priority order.
class Classifier::Compiled::Builder {
 public:
  explicit Builder(Compiled& c) : c_(c) {
    const size_t n = c.rules.size();
    node_budget_ = std::max<size_t>(1 << 16, n * 16);
    entry_budget_ = std::max<size_t>(1 << 18, n * 64);
    work_budget_ = std::max<size_t>(1 << 21, n * 400);
  }

  int32_t build(std::vector<uint32_t>& set, const Box& box, size_t depth);

 private:
  int32_t leaf(const std::vector<uint32_t>& set, int32_t sure);
  Split choose(const std::vector<uint32_t>& set, const Box& box);

  Compiled& c_;
  size_t node_budget_, entry_budget_, work_budget_;
  // Scratch for choose(), reused across nodes.
  std::vector<uint32_t> a_, b_, cut_, sample_;
};

int32_t Classifier::Compiled::Builder::leaf(const std::vector<uint32_t>& set, int32_t sure) {
  Leaf l;
  l.begin = static_cast<uint32_t>(c_.cand.size());
  c_.cand.insert(c_.cand.end(), set.begin(), set.end());
  l.end = static_cast<uint32_t>(c_.cand.size());
  l.sure = sure;
  c_.leaves.push_back(l);
  c_.stats.max_leaf = std::max<size_t>(c_.stats.max_leaf, set.size());
  return ~static_cast<int32_t>(c_.leaves.size() - 1);
}

// Picks the cut "field[dim] <= point" that keeps the larger half smallest,
// with replicated rules as a penalty. a_r / b_r are the lowest / highest value
// rule r holds inside the box: r goes left iff a_r <= x, right iff b_r > x.
Split Classifier::Compiled::Builder::choose(const std::vector<uint32_t>& all, const Box& box) {
  Split best;
  // Big nodes judge cuts on an evenly spaced sample: the cut only steers the
  // tree's shape, the partition below is exact.
  const std::vector<uint32_t>* setp = &all;
  if (all.size() > kSample) {
    sample_.clear();
    for (size_t i = 0; i < kSample; i++) sample_.push_back(all[i * all.size() / kSample]);
    setp = &sample_;
  }
  const std::vector<uint32_t>& set = *setp;
  const uint64_t n = set.size();
  for (int d = 0; d < kDims; d++) {
    const uint32_t L = box.lo[d], H = box.hi[d];
    if (L == H) continue;
    a_.clear();
    b_.clear();
    cut_.clear();
    for (uint32_t p : set) {
      const CRule& r = c_.rules[p];
      uint32_t n_iv;
      const Interval* iv = c_.list(p, d, n_iv);
      if (!iv) {
        a_.push_back(std::max(r.lo[d], L));
        b_.push_back(std::min(r.hi[d], H));
        continue;
      }
      // A port list: its inner edges are cuts too (its outer ones come from a_/b_).
      uint32_t amin = UINT32_MAX, bmax = 0;
      for (uint32_t i = 0; i < n_iv; i++) {
        if (iv[i].hi < L || iv[i].lo > H) continue;
        const uint32_t lo = std::max(iv[i].lo, L), hi = std::min(iv[i].hi, H);
        amin = std::min(amin, lo);
        bmax = std::max(bmax, hi);
        if (lo > L) cut_.push_back(lo - 1);
        if (hi < H) cut_.push_back(hi);
      }
      a_.push_back(amin);
      b_.push_back(bmax);
    }
    std::sort(a_.begin(), a_.end());
    std::sort(b_.begin(), b_.end());
    std::sort(cut_.begin(), cut_.end());
    // Walk every candidate cut x in increasing order: a - 1 (a > L), b (b < H)
    // and the inner list edges, counting rules on each side as we go.
    size_t ca = 0, cb = 0, ce = 0, ia = 0, ib = 0;
    for (;;) {
      while (ca < a_.size() && a_[ca] <= L) ca++;
      uint64_t x = UINT64_MAX;
      if (ca < a_.size()) x = a_[ca] - 1;
      if (cb < b_.size() && b_[cb] < H) x = std::min<uint64_t>(x, b_[cb]);
      if (ce < cut_.size()) x = std::min<uint64_t>(x, cut_[ce]);
      if (x == UINT64_MAX) break;
      while (ca < a_.size() && a_[ca] - 1 == x) ca++;
      while (cb < b_.size() && b_[cb] == x) cb++;
      while (ce < cut_.size() && cut_[ce] == x) ce++;
      while (ia < a_.size() && a_[ia] <= x) ia++;
      while (ib < b_.size() && b_[ib] <= x) ib++;
      const uint64_t left = ia, right = n - ib;
      // Larger half first, then replication (left + right - n). Tuned on
      // random 10k-rule chains and on crossing src-any/dst-any stripes: a
      // heavier replication weight prefers peeling one rule at a time, which
      // runs into the depth cap on the stripes.
      const uint64_t cost = std::max(left, right) * 3 + (left + right - n);
      if (cost < best.cost) {
        best.cost = cost;
        best.dim = d;
        best.point = static_cast<uint32_t>(x);
      }
    }
  }
  return best;
}

int32_t Classifier::Compiled::Builder::build(std::vector<uint32_t>& set, const Box& box, size_t depth) {
  c_.stats.max_depth = std::max(c_.stats.max_depth, depth);
  // Priority pruning: nothing after a rule covering the whole box can be first.
  for (size_t i = 0; i < set.size(); i++) {
    bool all = true;
    for (int d = 0; d < kDims && all; d++) all = c_.covers(set[i], d, box.lo[d], box.hi[d]);
    if (all) {
      if (i == 0) return leaf({}, c_.rules[set[0]].index);
      set.resize(i + 1);
      break;
    }
  }
  if (set.empty()) return leaf(set, -1);
  if (set.size() <= kLeafSize) return leaf(set, -1);
  if (depth >= static_cast<size_t>(kMaxDepth) || c_.nodes.size() >= node_budget_ ||
      c_.cand.size() >= entry_budget_ || c_.stats.work >= work_budget_) {
    c_.stats.capped = true;
    return leaf(set, -1);
  }
  c_.stats.work += set.size();
  const Split s = choose(set, box);
  if (s.dim < 0) return leaf(set, -1);  // no rule edge inside the box

  const int32_t self = static_cast<int32_t>(c_.nodes.size());
  c_.nodes.push_back(Node{s.point, static_cast<uint32_t>(s.dim), {0, 0}});
  for (int side = 0; side < 2; side++) {
    Box sub = box;
    if (side == 0) {
      sub.hi[s.dim] = s.point;
    } else {
      sub.lo[s.dim] = s.point + 1;
    }
    std::vector<uint32_t> part;
    part.reserve(set.size());
    for (uint32_t p : set)
      if (c_.intersects(p, s.dim, sub.lo[s.dim], sub.hi[s.dim])) part.push_back(p);
    const int32_t child = build(part, sub, depth + 1);
    c_.nodes[self].child[side] = child;
  }
  return self;
}

void Classifier::Compiled::build_tree() {
  std::vector<uint32_t> all(rules.size());
  for (size_t i = 0; i < all.size(); i++) all[i] = static_cast<uint32_t>(i);
  Box box;
  for (int d = 0; d < kDims; d++) {
    box.lo[d] = 0;
    box.hi[d] = kDimMax[d];
  }
  Builder b(*this);
  root = b.build(all, box, 0);
  nodes.shrink_to_fit();
  leaves.shrink_to_fit();
  cand.shrink_to_fit();
  stats.nodes = nodes.size();
  stats.leaves = leaves.size();
  stats.entries = cand.size();
  stats.bytes = rules.capacity() * sizeof(CRule) + ports.capacity() * sizeof(Interval) +
                nodes.capacity() * sizeof(Node) + leaves.capacity() * sizeof(Leaf) +
                cand.capacity() * sizeof(uint32_t) + sizeof(Compiled);
}

Classifier::Classifier(std::vector<Rule> rules) : rules_(std::move(rules)) {
  compiled_ = new Compiled();
  compiled_->rules.reserve(rules_.size());
  for (size_t i = 0; i < rules_.size(); i++) compiled_->compile_rule(rules_[i], static_cast<int32_t>(i));
  compiled_->build_tree();
}

Classifier::~Classifier() { delete compiled_; }

Classifier::Stats Classifier::stats() const { return compiled_->stats; }

int32_t Classifier::match(const PacketKey& k) const {
  const Compiled& c = *compiled_;
  uint32_t v[kDims];
  key_point(k, v);
  int32_t ref = c.root;
  while (ref >= 0) {
    const Node& n = c.nodes[static_cast<size_t>(ref)];
    ref = n.child[v[n.dim] > n.point];
  }
  const Leaf& l = c.leaves[static_cast<size_t>(~ref)];
  for (uint32_t i = l.begin; i < l.end; i++)
    if (c.matches(c.cand[i], v)) return c.rules[c.cand[i]].index;
  return l.sure;
}

}  // namespace moat
