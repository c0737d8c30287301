// peer_rules.h: each vassal's own firewall rules (issue 17 item 3), by the
// address of its peer. A packet toward a peer (chain "in") or from it
// (chain "out") passes only if the router's chain (chain.h) accepts it AND
// the peer's own chain, if it has one, accepts it too: the peer's chain can
// only narrow what the router allows. Its default (no rule matches) is
// allow. A PeerRuleTable is the whole set of one set_peer_rules() call,
// built on the controlling thread and swapped in by the loop between two
// batches; each set's hit counters carry over from the set with the same
// key in the table it replaces (carry_in/out as chain.h's inherit()).
//
// Threads: built on any one thread, then read by the loop thread; hit
// counters are chain.h's. Limits: no allocation after construction; one
// hash lookup per packet, and none while the table is empty. Syscalls: none.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "chain.h"

namespace moat {

// One peer's chains. key: the caller's name for the set (the same vassal
// keeps its key across calls), which counters follow; addr: the peer's
// address (IPv4, host order), which packets find it by.
struct PeerRules {
  uint32_t key;
  uint32_t addr;
  Chain in, out;
  std::vector<int32_t> carry_in, carry_out;  // against the set with this key when it was made
  PeerRules(uint32_t k, uint32_t a, std::vector<Rule> i, std::vector<Rule> o)
      : key(k), addr(a), in(std::move(i)), out(std::move(o)) {}
};

struct PeerRuleTable {
  std::vector<std::unique_ptr<PeerRules>> sets;
  std::unordered_map<uint32_t, PeerRules*> by_addr;

  // Adds a set; the caller checked that addr and key are unique.
  void add(std::unique_ptr<PeerRules> s) {
    by_addr[s->addr] = s.get();
    sets.push_back(std::move(s));
  }

  const PeerRules* find(uint32_t addr) const {
    if (by_addr.empty()) return nullptr;
    const auto it = by_addr.find(addr);
    return it == by_addr.end() ? nullptr : it->second;
  }

  // The peer's own verdict (true: it may pass); no set for addr: true.
  bool pass_in(uint32_t addr, const uint8_t* pkt, size_t len) const {
    const PeerRules* r = find(addr);
    return !r || r->in.pass(pkt, len);
  }
  bool pass_out(uint32_t addr, const uint8_t* pkt, size_t len) const {
    const PeerRules* r = find(addr);
    return !r || r->out.pass(pkt, len);
  }

  const PeerRules* by_key(uint32_t key) const {
    for (const auto& s : sets)
      if (s->key == key) return s.get();
    return nullptr;
  }

  // On the loop thread, before the swap: every set takes its counters from
  // old's set with the same key.
  void inherit(const PeerRuleTable& old) {
    for (auto& s : sets) {
      const PeerRules* o = old.by_key(s->key);
      if (!o) continue;
      s->in.inherit(o->in, s->carry_in);
      s->out.inherit(o->out, s->carry_out);
    }
  }

  // This table was made against `prev` (not yet taken by the loop, so the
  // loop still holds the table prev was made against): route the carry
  // indices through prev's own, as Router::set_rules does.
  void compose(const PeerRuleTable& prev) {
    auto through = [](std::vector<int32_t>& c, const std::vector<int32_t>& p) {
      for (int32_t& x : c) x = (x >= 0 && size_t(x) < p.size()) ? p[x] : -1;
    };
    for (auto& s : sets) {
      const PeerRules* p = prev.by_key(s->key);
      if (!p) {
        // prev dropped this key: the loop's table may still have it, but the
        // caller's indices refer to nothing there now.
        std::fill(s->carry_in.begin(), s->carry_in.end(), -1);
        std::fill(s->carry_out.begin(), s->carry_out.end(), -1);
        continue;
      }
      through(s->carry_in, p->carry_in);
      through(s->carry_out, p->carry_out);
    }
  }
};

// One set's hit counters, for stats().
struct PeerRuleHits {
  uint32_t key, addr;
  std::vector<uint64_t> in, out;
};

}  // namespace moat
