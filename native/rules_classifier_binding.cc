// rules_classifier_binding.cc: a minimal Classifier binding written by the
// rules helper so that `moat rules trace` and its tests can run before the
// classifier helper's binding lands. It replaces classifier_binding.cc (same
// symbol, InitClassifierBinding); it is NOT listed in CMakeLists.txt. Drop it
// once the real binding is merged.
//
// JS: new Classifier(rules: NativeRule[]); match(keys: Uint32Array): Int32Array
// (7 uint32 per packet, KEY_FIELDS order); size. Rules are validated in TS
// (src/rules); this file still checks every field it reads, since JS callers
// other than src/rules could reach it. No syscalls.
#include <napi.h>

#include <memory>

#include "classifier.h"

namespace moat {
namespace {

uint32_t u32(const Napi::Object& o, const char* k, uint32_t max) {
  Napi::Value v = o.Get(k);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("rule.") + k + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= max) || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw Napi::RangeError::New(o.Env(), std::string("rule.") + k + " out of range");
  return static_cast<uint32_t>(d);
}

int32_t optional(const Napi::Object& o, const char* k, int32_t max) {
  Napi::Value v = o.Get(k);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("rule.") + k + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d == -1) return -1;
  if (!(d >= 0 && d <= max) || d != static_cast<double>(static_cast<int32_t>(d)))
    throw Napi::RangeError::New(o.Env(), std::string("rule.") + k + " out of range");
  return static_cast<int32_t>(d);
}

std::vector<PortRange> ranges(const Napi::Object& o, const char* k) {
  Napi::Value v = o.Get(k);
  if (!v.IsArray()) throw Napi::TypeError::New(o.Env(), std::string("rule.") + k + " must be an array");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<PortRange> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsArray() || e.As<Napi::Array>().Length() != 2)
      throw Napi::TypeError::New(o.Env(), std::string("rule.") + k + " entries must be [lo, hi]");
    Napi::Array p = e.As<Napi::Array>();
    Napi::Value lo = p.Get(0u), hi = p.Get(1u);
    if (!lo.IsNumber() || !hi.IsNumber()) throw Napi::TypeError::New(o.Env(), "port must be a number");
    double l = lo.As<Napi::Number>().DoubleValue(), h = hi.As<Napi::Number>().DoubleValue();
    if (!(l >= 0 && h <= 65535 && l <= h)) throw Napi::RangeError::New(o.Env(), "bad port range");
    out.push_back({static_cast<uint16_t>(l), static_cast<uint16_t>(h)});
  }
  return out;
}

class ClassifierWrap : public Napi::ObjectWrap<ClassifierWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Classifier", {
      InstanceMethod<&ClassifierWrap::Match>("match"),
      InstanceAccessor<&ClassifierWrap::Size>("size"),
    });
  }

  explicit ClassifierWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ClassifierWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "Classifier(rules: NativeRule[])");
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<Rule> rules;
    rules.reserve(arr.Length());
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value v = arr.Get(i);
      if (!v.IsObject()) throw Napi::TypeError::New(env, "rule must be an object");
      Napi::Object o = v.As<Napi::Object>();
      Rule r;
      r.action = u32(o, "action", 1) ? Action::Deny : Action::Allow;
      r.src = u32(o, "src", 0xffffffffu);
      r.src_bits = static_cast<uint8_t>(u32(o, "srcBits", 32));
      r.dst = u32(o, "dst", 0xffffffffu);
      r.dst_bits = static_cast<uint8_t>(u32(o, "dstBits", 32));
      r.proto = static_cast<int16_t>(optional(o, "proto", 255));
      r.sport = ranges(o, "sport");
      r.dport = ranges(o, "dport");
      r.icmp_type = static_cast<int16_t>(optional(o, "icmpType", 255));
      rules.push_back(std::move(r));
    }
    classifier_ = std::make_unique<Classifier>(std::move(rules));
  }

 private:
  Napi::Value Match(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
      throw Napi::TypeError::New(env, "match(keys: Uint32Array)");
    Napi::Uint32Array keys = info[0].As<Napi::Uint32Array>();
    if (keys.ElementLength() % 7 != 0) throw Napi::RangeError::New(env, "keys: 7 uint32 per packet");
    size_t n = keys.ElementLength() / 7;
    Napi::Int32Array out = Napi::Int32Array::New(env, n);
    const uint32_t* k = keys.Data();
    for (size_t i = 0; i < n; i++, k += 7) {
      PacketKey pk{k[0], k[1], static_cast<uint8_t>(k[2]), k[3] != 0, static_cast<uint16_t>(k[4]),
                   static_cast<uint16_t>(k[5]), static_cast<uint8_t>(k[6])};
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
