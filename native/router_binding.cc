// router_binding.cc: the Router class as JavaScript sees it (src/native.ts),
// plus parseFrames and checkIpv4 for tests. Arguments are type-checked here
// (binding_args.h, rule_binding.h; option values within option_bounds.h's
// limits), with TypeErrors naming the field; policy is TS's. Events cross
// from the loop thread through one ThreadSafeFunction call per batch; it is
// released on stop so the process can exit.
#include <napi.h>

#include <algorithm>
#include <memory>

#include "binding_args.h"
#include "frame.h"
#include "option_bounds.h"
#include "router.h"
#include "rule_binding.h"

namespace moat {
namespace {

constexpr int64_t kMaxStartTime = 9007199254740991LL;  // 2^53 - 1: exact in a JS number

std::vector<Binding> ToBindingList(const Napi::Value& v, const std::string& name) {
  const Napi::Array a = arg_array(v, name);
  std::vector<Binding> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    const ArgObject o(a.Get(i), name + "[" + std::to_string(i) + "]");
    Binding b;
    // uid and pid: -1 means any; both -1 is a pure reservation (router.h).
    b.uid = o.integer("uid", -1, 4294967294LL);
    if (o.has("pid")) b.pid = o.integer("pid", -1, 2147483647LL);
    // A pid alone is what a new process reusing the number inherits: a pid
    // binding names the process's start time too (peer_identity.h).
    if (b.pid >= 0 || o.has("start")) b.start = uint64_t(o.integer("start", b.pid >= 0 ? 1 : 0, kMaxStartTime));
    if (o.has("vassal")) b.vassal = o.uint32("vassal");
    // addr 0: the vassal learns its address (a vassal binding only).
    b.addr = uint32_t(o.integer("addr", b.vassal != 0 ? 0 : 1, 0xffffffffLL));
    out.push_back(b);
  }
  return out;
}

// The learnable network: {net, bits} (net masked here; bits 0: any
// address), or null: nothing may be learned.
LearnNet ToLearnNet(const Napi::Value& v, const std::string& name) {
  LearnNet n;
  if (v.IsNull()) {
    n.none = true;
    return n;
  }
  const ArgObject o(v, name, "{net, bits} or null");
  const int64_t bits = o.integer("bits", 0, 32);
  n.mask = bits == 0 ? 0 : uint32_t(0xffffffffu << (32 - bits));
  n.net = o.uint32("net") & n.mask;
  return n;
}

Bindings ToBindings(const Napi::Value& list, const std::string& list_name, const Napi::Value& learn,
                    const std::string& learn_name) {
  Bindings b;
  b.list = ToBindingList(list, list_name);
  b.learn = ToLearnNet(learn, learn_name);
  return b;
}

// setLimits' list: { addr, in?, out? }, in and out { bitsPerSec,
// packetsPerSec, burstBytes, burstPackets }; at most one entry per address.
RateLimit ToRateLimit(const Napi::Value& v, const std::string& name) {
  RateLimit r;
  if (v.IsUndefined()) return r;
  ArgObject o(v, name, "a rate limit object");
  r.bits_per_sec = uint64_t(o.integer("bitsPerSec", kRateBitsBounds));
  r.packets_per_sec = uint64_t(o.integer("packetsPerSec", kRatePacketsBounds));
  r.burst_bytes = uint64_t(o.integer("burstBytes", kBurstBytesBounds));
  r.burst_packets = uint64_t(o.integer("burstPackets", kBurstPacketsBounds));
  return r;
}

std::vector<PeerLimit> ToLimits(const Napi::Value& v, const std::string& name) {
  const Napi::Array a = arg_array(v, name, "an array of peer limits");
  std::vector<PeerLimit> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    const std::string n = name + "[" + std::to_string(i) + "]";
    ArgObject o(a.Get(i), n, "a peer limit object");
    PeerLimit l;
    l.addr = o.uint32("addr");
    l.in = ToRateLimit(o.get("in"), o.name("in"));
    l.out = ToRateLimit(o.get("out"), o.name("out"));
    for (const PeerLimit& x : out)
      if (x.addr == l.addr) throw Napi::TypeError::New(v.Env(), o.name("addr") + ": a second limit for the same address");
    out.push_back(l);
  }
  return out;
}

std::vector<int32_t> ToCarry(const Napi::Value& v, const std::string& name) {
  std::vector<int32_t> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    arg_error(v, name, "an Int32Array");
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  out.assign(a.Data(), a.Data() + a.ElementLength());
  return out;
}

// setPeerRules' list: { key, addr, in, out, carryIn?, carryOut? }; addr
// and key unique (0 is no peer's address).
std::vector<PeerRuleSpec> ToPeerRules(const Napi::Value& v, const std::string& name) {
  const Napi::Array a = arg_array(v, name, "an array of peer rule sets");
  std::vector<PeerRuleSpec> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    const std::string n = name + "[" + std::to_string(i) + "]";
    ArgObject o(a.Get(i), n, "a peer rule set object");
    PeerRuleSpec s;
    s.key = o.uint32("key");
    s.addr = uint32_t(o.integer("addr", 1, 0xffffffffLL));
    s.in = rules_from_js(o.get("in"), o.name("in"));
    s.out = rules_from_js(o.get("out"), o.name("out"));
    s.carry_in = ToCarry(o.get("carryIn"), o.name("carryIn"));
    s.carry_out = ToCarry(o.get("carryOut"), o.name("carryOut"));
    for (const PeerRuleSpec& x : out) {
      if (x.addr == s.addr) throw Napi::TypeError::New(v.Env(), o.name("addr") + ": a second rule set for the same address");
      if (x.key == s.key) throw Napi::TypeError::New(v.Env(), o.name("key") + ": a second rule set with the same key");
    }
    out.push_back(std::move(s));
  }
  return out;
}

Napi::Object DropsObject(Napi::Env env, const uint64_t* drops) {
  Napi::Object o = Napi::Object::New(env);
  for (int i = 0; i < kDropCount; i++) o.Set(drop_name(Drop(i)), Napi::Number::New(env, double(drops[i])));
  return o;
}

// One peer's counters: a row of stats().peers, and peer_down's stats.
Napi::Object PeerStatsToJs(Napi::Env env, const PeerStats& p) {
  Napi::Object po = Napi::Object::New(env);
  po.Set("id", double(p.id));
  po.Set("addr", double(p.addr));
  po.Set("uid", double(p.uid));
  po.Set("gid", double(p.gid));
  po.Set("pid", double(p.pid));
  po.Set("tx", double(p.tx));
  po.Set("rx", double(p.rx));
  po.Set("txBytes", double(p.tx_bytes));
  po.Set("rxBytes", double(p.rx_bytes));
  po.Set("dropped", double(p.dropped));
  po.Set("drops", DropsObject(env, p.drops));
  po.Set("queued", double(p.queued));
  po.Set("offload", p.offload);
  po.Set("handoff", p.handoff);
  po.Set("vnetRx", double(p.vnet_rx));
  po.Set("gsoRx", double(p.gso_rx));
  po.Set("vnetTx", double(p.vnet_tx));
  po.Set("gsoTx", double(p.gso_tx));
  po.Set("usoTx", double(p.uso_tx));
  po.Set("sndbufGrown", double(p.sndbuf_grown));
  po.Set("shapedIn", double(p.shaped_in));
  po.Set("shapedOut", double(p.shaped_out));
  po.Set("shapeQueuedIn", double(p.shape_queued_in));
  po.Set("shapeQueuedOut", double(p.shape_queued_out));
  po.Set("shapePeakIn", double(p.shape_peak_in));
  po.Set("shapePeakOut", double(p.shape_peak_out));
  po.Set("ipPacketsIn", double(p.ip_packets_in));
  po.Set("ipPacketsOut", double(p.ip_packets_out));
  po.Set("ipBytesIn", double(p.ip_bytes_in));
  po.Set("ipBytesOut", double(p.ip_bytes_out));
  return po;
}

Napi::Value EventToJs(Napi::Env env, const RouterEvent& e) {
  Napi::Object o = Napi::Object::New(env);
  auto num = [&](const char* k, double v) { o.Set(k, Napi::Number::New(env, v)); };
  switch (e.type) {
    case RouterEvent::Type::PeerUp:
      o.Set("type", "peer_up");
      num("id", e.id);
      num("uid", e.uid);
      num("gid", e.gid);
      num("pid", e.pid);
      num("start", double(e.start));
      break;
    case RouterEvent::Type::PeerAddr:
      o.Set("type", "peer_addr");
      num("id", e.id);
      num("addr", e.addr);
      break;
    case RouterEvent::Type::PeerDown:
      o.Set("type", "peer_down");
      num("id", e.id);
      num("addr", e.addr);
      o.Set("reason", e.reason);
      if (e.stats) o.Set("stats", PeerStatsToJs(env, *e.stats));
      break;
    case RouterEvent::Type::Refused:
      o.Set("type", "refused");
      num("id", e.id);
      o.Set("reason", e.reason);
      num("addr", e.addr);
      num("count", double(e.count));
      break;
    case RouterEvent::Type::ProtocolError:
      o.Set("type", "protocol_error");
      num("id", e.id);
      o.Set("reason", e.reason);
      if (!e.message.empty()) o.Set("message", e.message);
      break;
    case RouterEvent::Type::Error:
      o.Set("type", "error");
      o.Set("message", e.message);
      break;
    case RouterEvent::Type::Fatal:
      o.Set("type", "fatal");
      o.Set("message", e.message);
      break;
    case RouterEvent::Type::Notice:
      o.Set("type", "notice");
      o.Set("message", e.message);
      break;
  }
  return o;
}

class RouterWrap : public Napi::ObjectWrap<RouterWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Router",
                       {InstanceMethod("start", &RouterWrap::Start), InstanceMethod("stop", &RouterWrap::Stop),
                        InstanceMethod("setRules", &RouterWrap::SetRules),
                        InstanceMethod("setBindings", &RouterWrap::SetBindings),
                        InstanceMethod("setLimits", &RouterWrap::SetLimits),
                        InstanceMethod("setPeerRules", &RouterWrap::SetPeerRules),
                        InstanceMethod("relisten", &RouterWrap::Relisten),
                        InstanceMethod("stats", &RouterWrap::Stats)});
  }

  explicit RouterWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RouterWrap>(info) {
    const ArgObject o(info[0], "RouterOptions");
    RouterOptions opts;
    opts.tun_name = o.string("tunName");
    opts.netns = o.string("netns");
    opts.socket_path = o.string("socketPath");
    opts.socket_mode = uint32_t(o.integer("socketMode", kSocketModeBounds));
    opts.socket_uid = o.integer("socketUid", -1, 4294967294LL);
    opts.socket_gid = o.integer("socketGid", -1, 4294967294LL);
    opts.max_frame = uint32_t(o.integer("maxFrame", kMaxFrameBounds));
    opts.queue_bytes = uint32_t(o.integer("queueBytes", std::max<int64_t>(kQueueBytesBounds.lo, kFrameHeaderSize + opts.max_frame),
                                          kQueueBytesBounds.hi));
    opts.accept_rule_blocks = o.boolean("acceptRuleBlocks");
    opts.offload = o.boolean("offload");
    opts.handoff = o.boolean("handoff");
    opts.hold_us = uint32_t(o.integer("holdUs", kHoldUsBounds));
    opts.tun_queues = uint32_t(o.integer("tunQueues", kTunQueuesBounds));
    opts.sndbuf = uint32_t(o.integer("sndbuf", kSndbufBounds));
    opts.sndbuf_busy = uint32_t(o.integer("sndbufBusy", kSndbufBounds));
    opts.sndbuf_budget = uint64_t(o.integer("sndbufBudget", kSndbufBudgetBounds));
    opts.busy_poll_us = uint32_t(o.integer("busyPollUs", kBusyPollUsBounds));
    opts.bindings = ToBindings(o.get("bindings"), o.name("bindings"), o.get("learn"), o.name("learn"));
    core_ = std::make_shared<Router>(std::move(opts));
  }

  // Only reached when the loop is not running (start() holds a reference),
  // or at environment teardown: stop the thread, leave the TSFN to Node.
  ~RouterWrap() override {
    if (core_ && core_->running()) core_->stop();
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Function on_events = arg_function(info[0], "start: onEvents");
    if (core_->running()) throw Napi::Error::New(env, "router already running");
    tsfn_ = Napi::ThreadSafeFunction::New(env, on_events, "moat.Router.events", 0, 1);
    std::weak_ptr<Router> weak = core_;
    Napi::ThreadSafeFunction tsfn = tsfn_;
    // Called on the loop thread, at most once until the events are taken.
    auto wake = [weak, tsfn]() mutable {
      std::shared_ptr<Router> core = weak.lock();
      if (!core) return;
      tsfn.NonBlockingCall([core](Napi::Env env, Napi::Function cb) {
        std::vector<RouterEvent> events = core->take_events();
        if (events.empty()) return;
        Napi::Array a = Napi::Array::New(env, events.size());
        for (size_t i = 0; i < events.size(); i++) a.Set(uint32_t(i), EventToJs(env, events[i]));
        cb.Call({a});
      });
    };
    std::string err;
    if (!core_->start(wake, &err)) {
      tsfn_.Release();
      tsfn_ = Napi::ThreadSafeFunction();
      throw Napi::Error::New(env, err);
    }
    Ref();  // not collected while the loop runs
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  void Shutdown() {
    if (!core_ || !core_->running()) return;
    core_->stop();
    tsfn_.Release();
    tsfn_ = Napi::ThreadSafeFunction();
    Unref();
  }

  Napi::Value SetRules(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<Rule> in = rules_from_js(info[0], "inRules");
    std::vector<Rule> out = rules_from_js(info[1], "outRules");
    std::vector<int32_t> carry_in = ToCarry(info[2], "carryIn");
    std::vector<int32_t> carry_out = ToCarry(info[3], "carryOut");
    // The connection table's options: required when a rule names a state.
    ConntrackConfig ct;
    if (!info[4].IsUndefined() && !info[4].IsNull()) ct = conntrack_from_js(info[4], "conntrack");
    if (!ct.set && (rules_use_state(in) || rules_use_state(out)))
      throw Napi::TypeError::New(env, "conntrack: required when a rule names a state");
    core_->set_rules(std::move(in), std::move(out), std::move(carry_in), std::move(carry_out), ct);
    return env.Undefined();
  }

  Napi::Value SetBindings(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    core_->set_bindings(ToBindings(info[0], "bindings", info[1], "learn"));
    return env.Undefined();
  }

  Napi::Value SetLimits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    core_->set_limits(ToLimits(info[0], "limits"));
    return env.Undefined();
  }

  Napi::Value SetPeerRules(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    core_->set_peer_rules(ToPeerRules(info[0], "peerRules"));
    return env.Undefined();
  }

  Napi::Value Relisten(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string err;
    if (!core_->relisten(&err)) throw Napi::Error::New(env, err);
    return env.Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RouterStats s = core_->stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("rxPackets", double(s.rx_packets));
    o.Set("rxBytes", double(s.rx_bytes));
    o.Set("tunReadCalls", double(s.tun_read_calls));
    o.Set("tunQueues", double(s.tun_queues));
    o.Set("tunSteered", s.tun_steered);
    o.Set("txPackets", double(s.tx_packets));
    o.Set("txBytes", double(s.tx_bytes));
    o.Set("fragmented", double(s.fragmented));
    o.Set("fragNeeded", double(s.frag_needed));
    o.Set("gsoSplit", double(s.gso_split));
    o.Set("gsoSegments", double(s.gso_segments));
    o.Set("usoTx", double(s.uso_tx));
    o.Set("usoSegments", double(s.uso_segments));
    o.Set("heldFrames", double(s.held_frames));
    o.Set("heldWrites", double(s.held_writes));
    o.Set("sndbufGrownPeers", double(s.sndbuf_grown_peers));
    o.Set("sndbufGrownBytes", double(s.sndbuf_grown_bytes));
    o.Set("sndbufGrows", double(s.sndbuf_grows));
    o.Set("busyPolls", double(s.busy_polls));
    o.Set("busyPollCaught", double(s.busy_poll_caught));
    o.Set("busyPollNs", double(s.busy_poll_ns));
    o.Set("drops", DropsObject(env, s.drops));
    Napi::Object ct = Napi::Object::New(env);
    ct.Set("entries", double(s.conntrack_entries));
    ct.Set("slots", double(s.conntrack_slots));
    ct.Set("slotBytes", double(Conntrack::slot_bytes()));
    o.Set("conntrack", ct);
    o.Set("rejects", double(s.rejects));
    o.Set("rejectsLimited", double(s.rejects_limited));
    Napi::Array peers = Napi::Array::New(env, s.peers.size());
    for (size_t i = 0; i < s.peers.size(); i++) {
      peers.Set(uint32_t(i), PeerStatsToJs(env, s.peers[i]));
    }
    o.Set("peers", peers);
    Napi::Object hits = Napi::Object::New(env);
    auto arr = [&](const std::vector<uint64_t>& v) {
      Napi::Array a = Napi::Array::New(env, v.size());
      for (size_t i = 0; i < v.size(); i++) a.Set(uint32_t(i), double(v[i]));
      return a;
    };
    hits.Set("in", arr(s.hits_in));
    hits.Set("out", arr(s.hits_out));
    o.Set("hits", hits);
    Napi::Array peer_hits = Napi::Array::New(env, s.peer_hits.size());
    for (size_t i = 0; i < s.peer_hits.size(); i++) {
      const PeerRuleHits& h = s.peer_hits[i];
      Napi::Object ho = Napi::Object::New(env);
      ho.Set("key", double(h.key));
      ho.Set("addr", double(h.addr));
      ho.Set("in", arr(h.in));
      ho.Set("out", arr(h.out));
      peer_hits.Set(uint32_t(i), ho);
    }
    o.Set("peerHits", peer_hits);
    return o;
  }

  std::shared_ptr<Router> core_;
  Napi::ThreadSafeFunction tsfn_;
};

// parseFrames(buf, maxPayload): the frames at the front of buf, as the router
// reassembles them.
Napi::Value ParseFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Buffer<uint8_t> buf = arg_buffer(info[0], "parseFrames: buf");
  const int64_t mp = arg_int(info[1], "parseFrames: maxPayload", 0, kMaxFramePayload);
  const uint8_t* p = buf.Data();
  const size_t len = buf.Length();
  Napi::Array frames = Napi::Array::New(env);
  size_t off = 0;
  const char* status = "ok";
  for (;;) {
    if (off == len) break;
    FrameHeader h;
    const FrameStatus s = next_frame(p + off, len - off, size_t(mp), &h);
    if (s == FrameStatus::NeedMore) {
      status = "need_more";
      break;
    }
    if (s == FrameStatus::Oversize) {
      status = "oversize";
      break;
    }
    Napi::Object f = Napi::Object::New(env);
    f.Set("mod1", double(h.mod1));
    f.Set("mod2", double(h.mod2));
    f.Set("payload", Napi::Buffer<uint8_t>::Copy(env, p + off + kFrameHeaderSize, h.size));
    frames.Set(frames.Length(), f);
    off += kFrameHeaderSize + h.size;
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("frames", frames);
  r.Set("consumed", double(off));
  r.Set("status", status);
  return r;
}

// checkIpv4(pkt): null if the router would pass it on, else the drop reason.
Napi::Value CheckIpv4(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Buffer<uint8_t> buf = arg_buffer(info[0], "checkIpv4: pkt");
  Drop why;
  if (ipv4_check(buf.Data(), buf.Length(), &why)) return env.Null();
  return Napi::String::New(env, drop_name(why));
}

}  // namespace

void InitRouterBinding(Napi::Env env, Napi::Object exports) {
  exports.Set("Router", RouterWrap::Define(env));
  exports.Set("parseFrames", Napi::Function::New(env, ParseFrames, "parseFrames"));
  exports.Set("checkIpv4", Napi::Function::New(env, CheckIpv4, "checkIpv4"));
}

}  // namespace moat
