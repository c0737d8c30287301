// chain.h: the router's rules as its loop runs them. A Chain is one
// compiled chain (classifier.h) with a hit counter per rule; a RuleSet is
// both chains ("in": tun -> peer, "out": peer -> tun) of one set_rules()
// call. Built on the controlling thread, swapped in by the loop between two
// batches; counters carry over from the set it replaces (inherit()).
//
// A chain with a rule naming a `state` is compiled once per state (each
// classifier holds the rules that can match a packet in that state, with
// their indices in the chain): first match with a state costs one lookup,
// as without.
//
// A chain of VerdictCache::kMinRules rules or more remembers the rule it
// chose for recent packet keys (verdict_cache.h): a flow's packets after its
// first skip the tree.
//
// Threads: built on any one thread, then used by one thread (the loop, or
// the firewall binding's caller): the verdict cache is that thread's; hit
// counters are single-writer relaxed atomics (stats() reads them). Limits:
// no allocation after construction. Syscalls: none.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "classifier.h"
#include "conntrack.h"
#include "counter.h"
#include "frame.h"
#include "rule.h"
#include "verdict_cache.h"

namespace moat {

enum class Verdict : uint8_t { Allow, Deny, Reject };

// One compiled chain with its per-rule hit counters.
struct Chain {
  std::unique_ptr<Classifier> cls;
  std::unique_ptr<Counter[]> hits;
  std::vector<uint8_t> deny;  // per rule: the action is deny or reject
  std::vector<uint8_t> action;  // per rule: Action
  size_t size = 0;
  // With states: per state, its classifier and its rules' indices here.
  bool uses_state = false;
  std::unique_ptr<Classifier> by_state[kCtStates];
  std::vector<int32_t> index[kCtStates];
  mutable std::unique_ptr<VerdictCache> cache;  // big chains only

  explicit Chain(std::vector<Rule> rules) {
    size = rules.size();
    deny.resize(size);
    action.resize(size);
    for (size_t i = 0; i < size; i++) {
      deny[i] = rules[i].action != Action::Allow;
      action[i] = uint8_t(rules[i].action);
      if (rules[i].states) uses_state = true;
    }
    hits.reset(new Counter[size ? size : 1]);
    if (uses_state) {
      for (int s = 0; s < kCtStates; s++) {
        std::vector<Rule> sub;
        for (size_t i = 0; i < size; i++) {
          if (rules[i].states && !((rules[i].states >> s) & 1)) continue;
          sub.push_back(rules[i]);
          index[s].push_back(int32_t(i));
        }
        by_state[s].reset(new Classifier(std::move(sub)));
      }
    }
    cls.reset(new Classifier(std::move(rules)));
    if (size >= VerdictCache::kMinRules) cache.reset(new VerdictCache());
  }

  // The index of the first rule matching k (-1: none); state < 0: the
  // chain's whole classifier, else the one for that conntrack state.
  int32_t first_match(PacketKey k, int state) const {
    k.state = state < 0 ? 0xff : uint8_t(state);
    int32_t r;
    if (cache && cache->find(k, &r)) return r;
    if (state < 0) {
      r = cls->match(k);
    } else {
      const int32_t j = by_state[state]->match(k);
      r = j < 0 ? -1 : index[state][size_t(j)];
    }
    if (cache) cache->store(k, r);
    return r;
  }

  // The verdict for a packet in conntrack state `state` (a chain without
  // states ignores it); counts the hit of the rule that judged it.
  Verdict judge(const uint8_t* pkt, size_t len, uint8_t state) const {
    if (size == 0) return Verdict::Allow;
    const int32_t r = first_match(ipv4_key(pkt, len), uses_state ? int(state) : -1);
    if (r < 0 || size_t(r) >= size) return Verdict::Allow;
    hits[r].add(1);
    return Verdict(action[r]);
  }

  // true if the packet may pass; counts the hit of the rule that judged it.
  bool pass(const uint8_t* pkt, size_t len) const {
    if (size == 0) return true;
    const int32_t r = first_match(ipv4_key(pkt, len), -1);
    if (r < 0 || size_t(r) >= size) return true;
    hits[r].add(1);
    return !deny[r];
  }

  // Rule i inherits old's counter carry[i] (out of range or -1: starts at 0).
  void inherit(const Chain& old, const std::vector<int32_t>& carry) {
    for (size_t i = 0; i < size && i < carry.size(); i++) {
      const int32_t c = carry[i];
      if (c >= 0 && size_t(c) < old.size) hits[i].set(old.hits[c].get());
    }
  }
};

struct RuleSet {
  Chain in, out;
  std::vector<int32_t> carry_in, carry_out;  // against the rule set current when it was made
  ConntrackConfig ct;                        // the table's limits and timeouts (when stateful())
  RuleSet(std::vector<Rule> i, std::vector<Rule> o) : in(std::move(i)), out(std::move(o)) {}
  // Some rule names a state: flows are tracked (conntrack.h).
  bool stateful() const { return in.uses_state || out.uses_state; }
};

}  // namespace moat
