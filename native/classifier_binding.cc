// classifier_binding.cc: the Classifier class JS sees (src/native.ts).
//
//   new Classifier(rules: NativeRule[])   compiles a chain; a malformed rule
//                                         throws a TypeError naming the field,
//                                         e.g. "rules[3].dport[1]: ..."
//   match(keys: Uint32Array): Int32Array  7 uint32 per packet in KEY_FIELDS
//                                         order; first matching rule or -1
//   size                                  number of rules
// Used by tests, benchmarks and `moat rules trace`; the router compiles its
// chains on its own thread. Syscalls: none.
#include <napi.h>

#include <memory>
#include <string>

#include "classifier.h"

namespace moat {
namespace {

constexpr size_t kKeyFields = 7;  // src, dst, proto, hasL4, sport, dport, icmpType

[[noreturn]] void type_error(Napi::Env env, const std::string& what) { throw Napi::TypeError::New(env, what); }

// An integer in [lo, hi], or a TypeError naming the field.
int64_t integer(Napi::Env env, const Napi::Value& v, const std::string& name, int64_t lo, int64_t hi) {
  if (!v.IsNumber()) type_error(env, name + ": expected an integer " + std::to_string(lo) + ".." + std::to_string(hi));
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != static_cast<double>(static_cast<int64_t>(d)))
    type_error(env, name + ": expected an integer " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " +
                        v.ToString().Utf8Value());
  return static_cast<int64_t>(d);
}

Napi::Value field(Napi::Env env, const Napi::Object& o, const char* key, const std::string& where) {
  if (!o.Has(key)) type_error(env, where + "." + key + ": missing");
  return o.Get(key);
}

std::vector<PortRange> ports(Napi::Env env, const Napi::Value& v, const std::string& name) {
  if (!v.IsArray()) type_error(env, name + ": expected an array of [lo, hi] pairs");
  const Napi::Array a = v.As<Napi::Array>();
  std::vector<PortRange> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) {
    const std::string at = name + "[" + std::to_string(i) + "]";
    const Napi::Value pv = a.Get(i);
    if (!pv.IsArray() || pv.As<Napi::Array>().Length() != 2) type_error(env, at + ": expected a [lo, hi] pair");
    const Napi::Array pair = pv.As<Napi::Array>();
    const int64_t lo = integer(env, pair.Get(0u), at + "[0]", 0, 65535);
    const int64_t hi = integer(env, pair.Get(1u), at + "[1]", 0, 65535);
    if (lo > hi) type_error(env, at + ": range " + std::to_string(lo) + "-" + std::to_string(hi) + " is empty (lo > hi)");
    out.push_back({static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)});
  }
  return out;
}

// One address field pair; the network must already be masked (src/rules does it).
void address(Napi::Env env, const Napi::Object& o, const char* net_key, const char* bits_key, const std::string& where,
             uint32_t& net, uint8_t& bits) {
  net = static_cast<uint32_t>(integer(env, field(env, o, net_key, where), where + "." + net_key, 0, 0xffffffffLL));
  bits = static_cast<uint8_t>(integer(env, field(env, o, bits_key, where), where + "." + bits_key, 0, 32));
  const uint32_t mask = bits == 0 ? 0 : bits >= 32 ? 0xffffffffu : ~(0xffffffffu >> bits);
  if (net != 0 && bits != 0 && (net & ~mask) != 0)
    type_error(env, where + "." + net_key + ": host bits set for /" + std::to_string(bits) + " (network must be masked)");
}

Rule parse_rule(Napi::Env env, const Napi::Value& v, const std::string& where) {
  if (!v.IsObject() || v.IsArray()) type_error(env, where + ": expected a rule object");
  const Napi::Object o = v.As<Napi::Object>();
  Rule r;
  r.action = integer(env, field(env, o, "action", where), where + ".action", 0, 1) ? Action::Deny : Action::Allow;
  address(env, o, "src", "srcBits", where, r.src, r.src_bits);
  address(env, o, "dst", "dstBits", where, r.dst, r.dst_bits);
  r.proto = static_cast<int16_t>(integer(env, field(env, o, "proto", where), where + ".proto", -1, 255));
  r.sport = ports(env, field(env, o, "sport", where), where + ".sport");
  r.dport = ports(env, field(env, o, "dport", where), where + ".dport");
  r.icmp_type = static_cast<int16_t>(integer(env, field(env, o, "icmpType", where), where + ".icmpType", -1, 255));
  return r;
}

class ClassifierWrap : public Napi::ObjectWrap<ClassifierWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Classifier",
                       {InstanceMethod<&ClassifierWrap::Match>("match"),
                        InstanceAccessor<&ClassifierWrap::Size>("size")});
  }

  explicit ClassifierWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ClassifierWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsArray()) type_error(env, "Classifier: expected an array of rules");
    const Napi::Array a = info[0].As<Napi::Array>();
    std::vector<Rule> rules;
    rules.reserve(a.Length());
    for (uint32_t i = 0; i < a.Length(); i++) rules.push_back(parse_rule(env, a.Get(i), "rules[" + std::to_string(i) + "]"));
    if (rules.size() > 0x7fffffffu) type_error(env, "Classifier: too many rules");
    classifier_ = std::make_unique<Classifier>(std::move(rules));
  }

 private:
  Napi::Value Match(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
      type_error(env, "match: expected a Uint32Array of packet keys");
    const Napi::Uint32Array keys = info[0].As<Napi::Uint32Array>();
    const size_t len = keys.ElementLength();
    if (len % kKeyFields != 0)
      type_error(env, "match: key array length " + std::to_string(len) + " is not a multiple of 7");
    const size_t n = len / kKeyFields;
    Napi::Int32Array out = Napi::Int32Array::New(env, n);
    const uint32_t* k = keys.Data();
    for (size_t i = 0; i < n; i++, k += kKeyFields) {
      auto check = [&](size_t f, uint32_t max, const char* name) {
        if (k[f] > max)
          type_error(env, "match: packet " + std::to_string(i) + " " + name + " " + std::to_string(k[f]) +
                              " is out of range 0.." + std::to_string(max));
      };
      check(2, 255, "proto");
      check(3, 1, "hasL4");
      check(4, 65535, "sport");
      check(5, 65535, "dport");
      check(6, 255, "icmpType");
      PacketKey pk;
      pk.src = k[0];
      pk.dst = k[1];
      pk.proto = static_cast<uint8_t>(k[2]);
      pk.has_l4 = k[3] != 0;
      pk.sport = static_cast<uint16_t>(k[4]);
      pk.dport = static_cast<uint16_t>(k[5]);
      pk.icmp_type = static_cast<uint8_t>(k[6]);
      out[i] = classifier_->match(pk);
    }
    return out;
  }

  Napi::Value Size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(classifier_->size()));
  }

  std::unique_ptr<Classifier> classifier_;
};

}  // namespace

void InitClassifierBinding(Napi::Env env, Napi::Object exports) {
  exports.Set("Classifier", ClassifierWrap::Define(env));
}

}  // namespace moat
