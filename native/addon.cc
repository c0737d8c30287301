// addon.cc: registers the addon's classes; each lives in its own *_binding.cc.
#include <napi.h>

namespace moat {
void InitRouterBinding(Napi::Env env, Napi::Object exports);
void InitDeviceBinding(Napi::Env env, Napi::Object exports);
void InitClassifierBinding(Napi::Env env, Napi::Object exports);
void InitPtyBinding(Napi::Env env, Napi::Object exports);
void InitGsoBinding(Napi::Env env, Napi::Object exports);
}  // namespace moat

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  moat::InitRouterBinding(env, exports);
  moat::InitDeviceBinding(env, exports);
  moat::InitClassifierBinding(env, exports);
  moat::InitPtyBinding(env, exports);
  moat::InitGsoBinding(env, exports);
  return exports;
}

NODE_API_MODULE(moat, Init)
