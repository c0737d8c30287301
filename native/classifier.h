// classifier.h: a compiled firewall chain.
//
// Contract: match(k) returns the index of the first rule in the chain that
// matches k (rule_matches in rule.h is the reference), or -1 when none does
// (uWSGI's default policy: allow). A Classifier is immutable once built, so
// the router thread can use it while another thread builds its successor.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rule.h"

namespace moat {

class Classifier {
 public:
  explicit Classifier(std::vector<Rule> rules);
  ~Classifier();
  Classifier(const Classifier&) = delete;
  Classifier& operator=(const Classifier&) = delete;

  int32_t match(const PacketKey& k) const;
  size_t size() const { return rules_.size(); }
  const Rule& rule(size_t i) const { return rules_[i]; }

  // What the compiled form costs (for benchmarks and `moat rules trace`).
  struct Stats {
    size_t nodes = 0;        // internal decision nodes
    size_t leaves = 0;
    size_t entries = 0;      // rule references held by all leaves
    size_t max_depth = 0;
    size_t max_leaf = 0;     // longest list a lookup may scan
    size_t bytes = 0;        // heap held by the compiled form
    size_t work = 0;         // rules visited while building (bounded by a budget)
    bool capped = false;     // a budget stopped splitting somewhere
  };
  Stats stats() const;

 private:
  std::vector<Rule> rules_;
  struct Compiled;
  Compiled* compiled_ = nullptr;
};

}  // namespace moat
