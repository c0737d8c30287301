// addon.cc: registers the addon's classes, each in its own *_binding.cc, and
// exports optionBounds: the hard limits native code enforces on option values
// (option_bounds.h) as { maxFrame: [576, 65535], ... }, by the JS field names
// the bindings read, so a test can hold TypeScript's option table against them.
#include <napi.h>

#include "option_bounds.h"

namespace moat {
void InitRouterBinding(Napi::Env env, Napi::Object exports);
void InitDeviceBinding(Napi::Env env, Napi::Object exports);
void InitClassifierBinding(Napi::Env env, Napi::Object exports);
void InitFirewallBinding(Napi::Env env, Napi::Object exports);
void InitPtyBinding(Napi::Env env, Napi::Object exports);
void InitGsoBinding(Napi::Env env, Napi::Object exports);
void InitContainmentBinding(Napi::Env env, Napi::Object exports);

static Napi::Object OptionBoundsObject(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  for (const FieldBounds& f : kOptionBounds) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::Number::New(env, double(f.bounds.lo)));
    pair.Set(1u, Napi::Number::New(env, double(f.bounds.hi)));
    o.Set(f.field, pair);
  }
  return o;
}
}  // namespace moat

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  moat::InitRouterBinding(env, exports);
  moat::InitDeviceBinding(env, exports);
  moat::InitClassifierBinding(env, exports);
  moat::InitFirewallBinding(env, exports);
  moat::InitPtyBinding(env, exports);
  moat::InitGsoBinding(env, exports);
  moat::InitContainmentBinding(env, exports);
  exports.Set("optionBounds", moat::OptionBoundsObject(env));
  return exports;
}

NODE_API_MODULE(moat, Init)
