// firewall_binding.cc: the router's stateful judgement without the router,
// for tests: Firewall holds both chains (chain.h) and the connection table
// (conntrack.h) exactly as the router's loop does, and judges one packet at
// a time at a time the caller gives (the router reads its clock; a test
// cannot wait five days for a timeout). The sequence equivalence test
// (test/fuzz/conntrack.test.ts) drives it beside the TypeScript reference.
// rejectAnswer(pkt) is reject.h's answer. Threads: the JS thread. Syscalls: none.
#include <napi.h>

#include <memory>

#include "binding_args.h"
#include "chain.h"
#include "conntrack.h"
#include "frame.h"
#include "reject.h"
#include "rule_binding.h"

namespace moat {
namespace {

class FirewallWrap : public Napi::ObjectWrap<FirewallWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Firewall",
                       {InstanceMethod("setRules", &FirewallWrap::SetRules), InstanceMethod("judge", &FirewallWrap::Judge),
                        InstanceMethod("sweep", &FirewallWrap::Sweep), InstanceAccessor("size", &FirewallWrap::Size, nullptr)});
  }

  explicit FirewallWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FirewallWrap>(info) { SetRules(info); }

 private:
  // setRules(inRules, outRules, conntrack?): as Router.setRules.
  Napi::Value SetRules(const Napi::CallbackInfo& info) {
    std::vector<Rule> in = rules_from_js(info[0], "inRules");
    std::vector<Rule> out = rules_from_js(info[1], "outRules");
    ConntrackConfig c;
    if (!info[2].IsUndefined() && !info[2].IsNull()) c = conntrack_from_js(info[2], "conntrack");
    if (!c.set && (rules_use_state(in) || rules_use_state(out)))
      throw Napi::TypeError::New(info.Env(), "conntrack: required when a rule names a state");
    rules_.reset(new RuleSet(std::move(in), std::move(out)));
    conntrack_install(&ct_, rules_->stateful(), c);
    return info.Env().Undefined();
  }

  // judge(chain 'in'|'out', pkt, nowNs, vassal) -> { state, verdict, refused }:
  // state -1 when no table; verdict 'allow' | 'deny' | 'reject'; refused
  // '' or a drop reason (conntrack_full, conntrack_vassal).
  Napi::Value Judge(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::string chain = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    if (chain != "in" && chain != "out") arg_error(info[0], "judge: chain", "'in' or 'out'");
    Napi::Buffer<uint8_t> b = arg_buffer(info[1], "judge: pkt");
    const uint64_t now = uint64_t(arg_int(info[2], "judge: nowNs", 0, int64_t(1) << 53));
    const uint32_t vassal = uint32_t(arg_int(info[3], "judge: vassal", 0, 0xffffffffLL));
    Drop why;
    if (!ipv4_check(b.Data(), b.Length(), &why)) throw Napi::TypeError::New(env, std::string("judge: pkt: ") + drop_name(why));
    const Chain& c = chain == "in" ? rules_->in : rules_->out;
    Napi::Object r = Napi::Object::New(env);
    CtLookup l;
    int state = -1;
    if (ct_) {
      l = ct_->lookup(b.Data(), b.Length(), now);
      state = l.state;
    }
    const Verdict v = c.judge(b.Data(), b.Length(), ct_ ? l.state : 0);
    const char* refused = "";
    if (v == Verdict::Allow && ct_) {
      const CtRefusal f = ct_->commit(l, vassal, now);
      if (f != CtRefusal::None) refused = drop_name(f == CtRefusal::Full ? Drop::ConntrackFull : Drop::ConntrackVassal);
    }
    r.Set("state", double(state));
    r.Set("verdict", v == Verdict::Allow ? "allow" : v == Verdict::Deny ? "deny" : "reject");
    r.Set("refused", refused);
    return r;
  }

  Napi::Value Sweep(const Napi::CallbackInfo& info) {
    const uint64_t now = uint64_t(arg_int(info[0], "sweep: nowNs", 0, int64_t(1) << 53));
    if (ct_) ct_->sweep(now, ct_->capacity());
    return info.Env().Undefined();
  }

  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(ct_ ? ct_->size() : 0)); }

  std::unique_ptr<RuleSet> rules_;
  std::unique_ptr<Conntrack> ct_;
};

Napi::Value RejectAnswer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Buffer<uint8_t> b = arg_buffer(info[0], "rejectAnswer: pkt");
  Drop why;
  if (!ipv4_check(b.Data(), b.Length(), &why)) return env.Null();
  uint8_t out[kRejectMax];
  const size_t n = reject_answer(b.Data(), b.Length(), out, sizeof out);
  if (n == 0) return env.Null();
  return Napi::Buffer<uint8_t>::Copy(env, out, n);
}

}  // namespace

void InitFirewallBinding(Napi::Env env, Napi::Object exports) {
  exports.Set("Firewall", FirewallWrap::Define(env));
  exports.Set("rejectAnswer", Napi::Function::New(env, RejectAnswer, "rejectAnswer"));
}

}  // namespace moat
