// chain.h: the router's rules as its loop runs them. A Chain is one
// compiled chain (classifier.h) with a hit counter per rule; a RuleSet is
// both chains ("in": tun -> peer, "out": peer -> tun) of one set_rules()
// call. Built on the controlling thread, swapped in by the loop between two
// batches; counters carry over from the set it replaces (inherit()).
//
// Threads: built on any one thread, then read by the loop thread; hit
// counters are single-writer relaxed atomics (stats() reads them). Limits:
// no allocation after construction. Syscalls: none.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "classifier.h"
#include "counter.h"
#include "frame.h"
#include "rule.h"

namespace moat {

// One compiled chain with its per-rule hit counters.
struct Chain {
  std::unique_ptr<Classifier> cls;
  std::unique_ptr<Counter[]> hits;
  std::vector<uint8_t> deny;  // per rule: the action is deny
  size_t size = 0;

  explicit Chain(std::vector<Rule> rules) {
    size = rules.size();
    deny.resize(size);
    for (size_t i = 0; i < size; i++) deny[i] = rules[i].action == Action::Deny;
    hits.reset(new Counter[size ? size : 1]);
    cls.reset(new Classifier(std::move(rules)));
  }

  // true if the packet may pass; counts the hit of the rule that judged it.
  bool pass(const uint8_t* pkt, size_t len) const {
    if (size == 0) return true;
    const int32_t r = cls->match(ipv4_key(pkt, len));
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
  RuleSet(std::vector<Rule> i, std::vector<Rule> o) : in(std::move(i)), out(std::move(o)) {}
};

}  // namespace moat
