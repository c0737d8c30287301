// rule_binding.h: JS rule objects (src/native.ts's NativeRule, compiled by
// src/rules/compile.ts) to native Rules (rule.h), with one set of checks for
// every caller: Router.setRules (router_binding.cc) and the Classifier class
// that `moat rules trace` uses (classifier_binding.cc). A malformed rule
// throws a TypeError naming the field: "inRules[3].dport[1]: range 90-80 is
// empty (lo > hi)". Networks must come masked (compile.ts masks them; a set
// host bit would match differently here than in the rule's text).
// Threads: the JS thread. Syscalls: none.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "conntrack.h"
#include "rule.h"

namespace moat {

// v: an array of rule objects; name: how JS calls it ("rules", "inRules").
std::vector<Rule> rules_from_js(const Napi::Value& v, const std::string& name);

// setRules' conntrack object (src/native.ts's ConntrackOptions), within
// option_bounds.h's limits.
ConntrackConfig conntrack_from_js(const Napi::Value& v, const std::string& name);

// Does some rule name a state?
bool rules_use_state(const std::vector<Rule>& rules);

}  // namespace moat
