// rule_binding.cc: JS rule objects to native Rules (see rule_binding.h).
#include "rule_binding.h"

#include "binding_args.h"
#include "option_bounds.h"

namespace moat {
namespace {

std::vector<PortRange> ports(const Napi::Value& v, const std::string& name) {
  const Napi::Array a = arg_array(v, name, "an array of [lo, hi] pairs");
  std::vector<PortRange> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    const std::string at = name + "[" + std::to_string(i) + "]";
    const Napi::Value pv = a.Get(i);
    if (!pv.IsArray() || pv.As<Napi::Array>().Length() != 2) arg_error(pv, at, "a [lo, hi] pair");
    const Napi::Array pair = pv.As<Napi::Array>();
    const int64_t lo = arg_int(pair.Get(0u), at + "[0]", 0, 65535);
    const int64_t hi = arg_int(pair.Get(1u), at + "[1]", 0, 65535);
    if (lo > hi)
      throw Napi::TypeError::New(v.Env(), at + ": range " + std::to_string(lo) + "-" + std::to_string(hi) +
                                              " is empty (lo > hi)");
    out.push_back({uint16_t(lo), uint16_t(hi)});
  }
  return out;
}

// One address and its prefix length; the network must be masked.
void address(const ArgObject& o, const char* net_key, const char* bits_key, uint32_t* net, uint8_t* bits) {
  *net = o.uint32(net_key);
  *bits = uint8_t(o.integer(bits_key, 0, 32));
  const uint32_t mask = *bits == 0 ? 0 : *bits >= 32 ? 0xffffffffu : ~(0xffffffffu >> *bits);
  if (*net != 0 && *bits != 0 && (*net & ~mask) != 0)
    throw Napi::TypeError::New(o.get(net_key).Env(), o.name(net_key) + ": host bits set for /" +
                                                         std::to_string(*bits) + " (network must be masked)");
}

Rule rule(const Napi::Value& v, const std::string& name) {
  const ArgObject o(v, name, "a rule object");
  Rule r;
  r.action = Action(o.integer("action", 0, 2));  // allow, deny, reject
  address(o, "src", "srcBits", &r.src, &r.src_bits);
  address(o, "dst", "dstBits", &r.dst, &r.dst_bits);
  r.proto = int16_t(o.integer("proto", -1, 255));
  r.sport = ports(o.get("sport"), o.name("sport"));
  r.dport = ports(o.get("dport"), o.name("dport"));
  r.icmp_type = int16_t(o.integer("icmpType", -1, 255));
  // Connection states (bits 1 << CtState); absent or 0: any.
  if (o.has("states")) r.states = uint8_t(o.integer("states", 0, (1 << kCtStates) - 1));
  return r;
}

}  // namespace

std::vector<Rule> rules_from_js(const Napi::Value& v, const std::string& name) {
  const Napi::Array a = arg_array(v, name, "an array of rules");
  if (a.Length() > 0x7fffffffu) throw Napi::TypeError::New(v.Env(), name + ": too many rules");
  std::vector<Rule> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(rule(a.Get(i), name + "[" + std::to_string(i) + "]"));
  return out;
}

ConntrackConfig conntrack_from_js(const Napi::Value& v, const std::string& name) {
  const ArgObject o(v, name, "a conntrack options object");
  ConntrackConfig c;
  c.set = true;
  c.max = uint32_t(o.integer("ctMax", kCtMaxBounds));
  c.max_per_vassal = uint32_t(o.integer("ctMaxPerVassal", kCtMaxBounds));
  auto t = [&](const char* k) { return uint32_t(o.integer(k, kCtTimeoutBounds)); };
  c.tcp_syn_sent = t("ctTimeoutTcpSynSent");
  c.tcp_syn_recv = t("ctTimeoutTcpSynRecv");
  c.tcp_established = t("ctTimeoutTcpEstablished");
  c.tcp_fin_wait = t("ctTimeoutTcpFinWait");
  c.tcp_close_wait = t("ctTimeoutTcpCloseWait");
  c.tcp_last_ack = t("ctTimeoutTcpLastAck");
  c.tcp_time_wait = t("ctTimeoutTcpTimeWait");
  c.tcp_close = t("ctTimeoutTcpClose");
  c.udp = t("ctTimeoutUdp");
  c.udp_stream = t("ctTimeoutUdpStream");
  c.icmp = t("ctTimeoutIcmp");
  c.generic = t("ctTimeoutGeneric");
  return c;
}

bool rules_use_state(const std::vector<Rule>& rules) {
  for (const Rule& r : rules)
    if (r.states) return true;
  return false;
}

}  // namespace moat
