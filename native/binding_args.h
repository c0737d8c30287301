// binding_args.h: reading plain JS option objects in the *_binding.cc files,
// with precise TypeErrors that name the field ("DeviceOptions.name must be a
// string"). Policy stays in TypeScript; these only refuse what C++ cannot take.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

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

}  // namespace moat
