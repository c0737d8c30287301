// binding_args.h: reading plain JS option objects in the *_binding.cc files,
// with precise TypeErrors that name the field ("DeviceOptions.name must be a
// string"). Policy stays in TypeScript; these only refuse what C++ cannot take.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moat {

inline std::string arg_string(const Napi::Object& o, const std::string& where, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), where + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

inline int64_t arg_int(const Napi::Object& o, const std::string& where, const char* key, int64_t lo, int64_t hi) {
  Napi::Value v = o.Get(key);
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!std::isfinite(d) || std::floor(d) != d || d < double(lo) || d > double(hi)) {
    throw Napi::TypeError::New(o.Env(), where + key + " must be an integer in " + std::to_string(lo) + ".." +
                                            std::to_string(hi));
  }
  return int64_t(d);
}

// A sink for a native thread's event batches: each batch crosses to JS as one
// array (one thread-safe call per batch, never per packet). A batch that
// cannot be queued (JS shutting down) is freed here.
template <class Event>
auto batch_to_js(Napi::ThreadSafeFunction tsfn, Napi::Object (*to_js)(Napi::Env, const Event&)) {
  return [tsfn, to_js](std::vector<Event>&& events) mutable {
    auto* batch = new std::vector<Event>(std::move(events));
    napi_status st = tsfn.NonBlockingCall(batch, [to_js](Napi::Env env, Napi::Function cb, std::vector<Event>* b) {
      std::unique_ptr<std::vector<Event>> owned(b);
      if (env == nullptr || cb.IsEmpty()) return;  // shutting down
      Napi::Array arr = Napi::Array::New(env, owned->size());
      for (size_t i = 0; i < owned->size(); i++) arr.Set(uint32_t(i), to_js(env, (*owned)[i]));
      cb.Call({arr});
    });
    if (st != napi_ok) delete batch;
  };
}

}  // namespace moat
