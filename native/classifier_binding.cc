// classifier_binding.cc: the Classifier class JS sees (src/native.ts).
//
//   new Classifier(rules: NativeRule[])   compiles a chain; rules are read and
//                                         checked as Router.setRules reads them
//                                         (rule_binding.h): a malformed rule
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

#include "binding_args.h"
#include "classifier.h"
#include "rule_binding.h"

namespace moat {
namespace {

constexpr size_t kKeyFields = 7;  // src, dst, proto, hasL4, sport, dport, icmpType

class ClassifierWrap : public Napi::ObjectWrap<ClassifierWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Classifier",
                       {InstanceMethod<&ClassifierWrap::Match>("match"),
                        InstanceAccessor<&ClassifierWrap::Size>("size")});
  }

  explicit ClassifierWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ClassifierWrap>(info) {
    classifier_ = std::make_unique<Classifier>(rules_from_js(info[0], "rules"));
  }

 private:
  Napi::Value Match(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
      arg_error(info[0], "match: keys", "a Uint32Array of packet keys");
    const Napi::Uint32Array keys = info[0].As<Napi::Uint32Array>();
    const size_t len = keys.ElementLength();
    if (len % kKeyFields != 0)
      throw Napi::TypeError::New(env, "match: key array length " + std::to_string(len) + " is not a multiple of 7");
    const size_t n = len / kKeyFields;
    Napi::Int32Array out = Napi::Int32Array::New(env, n);
    const uint32_t* k = keys.Data();
    for (size_t i = 0; i < n; i++, k += kKeyFields) {
      auto check = [&](size_t f, uint32_t max, const char* name) {
        if (k[f] > max)
          throw Napi::TypeError::New(env, "match: packet " + std::to_string(i) + " " + name + " " +
                                              std::to_string(k[f]) + " is out of range 0.." + std::to_string(max));
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
