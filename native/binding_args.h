// binding_args.h: the one way the *_binding.cc files read JS values. Every
// reader takes the value's name as JS wrote it ("RouterOptions.maxFrame",
// "rules[3].dport[1][0]", "gsoSplit: scratchLen") and throws a TypeError
// that names it, says what was expected and what came:
//   RouterOptions.maxFrame: expected an integer 576..65535, got 70000
//   rules[0].icmpType: missing (expected an integer -1..255)
// Policy stays in TypeScript; these refuse only what C++ cannot take.
// ArgObject reads the fields of one options object; the arg_* functions
// read one value (a positional argument, an array element). Option bounds
// come from option_bounds.h. Threads: the JS thread. Syscalls: none.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "option_bounds.h"

namespace moat {

// What came, for an error message: 2, 'abc', null, an object, ...
inline std::string arg_describe(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean:
    case napi_number: return v.ToString().Utf8Value();
    case napi_string: {
      std::string s = v.As<Napi::String>().Utf8Value();
      if (s.size() > 40) s = s.substr(0, 40) + "...";
      return "'" + s + "'";
    }
    case napi_object: return v.IsArray() ? "an array" : "an object";
    case napi_function: return "a function";
    default: return "a value of another type";
  }
}

[[noreturn]] inline void arg_error(const Napi::Value& v, const std::string& name, const std::string& expected) {
  if (v.IsUndefined()) throw Napi::TypeError::New(v.Env(), name + ": missing (expected " + expected + ")");
  throw Napi::TypeError::New(v.Env(), name + ": expected " + expected + ", got " + arg_describe(v));
}

// An integer in [lo, hi].
inline int64_t arg_int(const Napi::Value& v, const std::string& name, int64_t lo, int64_t hi) {
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!std::isfinite(d) || std::floor(d) != d || d < double(lo) || d > double(hi))
    arg_error(v, name, "an integer " + std::to_string(lo) + ".." + std::to_string(hi));
  return int64_t(d);
}

inline int64_t arg_int(const Napi::Value& v, const std::string& name, Bounds b) { return arg_int(v, name, b.lo, b.hi); }

inline uint32_t arg_uint32(const Napi::Value& v, const std::string& name) {
  return uint32_t(arg_int(v, name, 0, 0xffffffffLL));
}

inline bool arg_bool(const Napi::Value& v, const std::string& name) {
  if (!v.IsBoolean()) arg_error(v, name, "a boolean");
  return v.As<Napi::Boolean>().Value();
}

inline std::string arg_string(const Napi::Value& v, const std::string& name) {
  if (!v.IsString()) arg_error(v, name, "a string");
  return v.As<Napi::String>().Utf8Value();
}

// what: how the error message calls the expected array ("an array of rules").
inline Napi::Array arg_array(const Napi::Value& v, const std::string& name, const char* what = "an array") {
  if (!v.IsArray()) arg_error(v, name, what);
  return v.As<Napi::Array>();
}

inline std::vector<std::string> arg_strings(const Napi::Value& v, const std::string& name) {
  const Napi::Array a = arg_array(v, name, "an array of strings");
  std::vector<std::string> out;
  out.reserve(a.Length());
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(arg_string(a.Get(i), name + "[" + std::to_string(i) + "]"));
  return out;
}

inline Napi::Buffer<uint8_t> arg_buffer(const Napi::Value& v, const std::string& name) {
  if (!v.IsBuffer()) arg_error(v, name, "a Buffer");
  return v.As<Napi::Buffer<uint8_t>>();
}

inline Napi::Function arg_function(const Napi::Value& v, const std::string& name) {
  if (!v.IsFunction()) arg_error(v, name, "a function");
  return v.As<Napi::Function>();
}

// One options object; its fields are named "<where>.<key>". An optional
// field is absent or undefined (has() is false): the caller keeps its value.
class ArgObject {
 public:
  // what: how the error message calls the expected object.
  ArgObject(const Napi::Value& v, std::string where, const char* what = "an object") : where_(std::move(where)) {
    if (!v.IsObject() || v.IsArray() || v.IsFunction()) arg_error(v, where_, what);
    o_ = v.As<Napi::Object>();
  }

  Napi::Value get(const char* key) const { return o_.Get(key); }
  bool has(const char* key) const { return !get(key).IsUndefined(); }
  std::string name(const char* key) const { return where_ + "." + key; }

  int64_t integer(const char* key, int64_t lo, int64_t hi) const { return arg_int(get(key), name(key), lo, hi); }
  int64_t integer(const char* key, Bounds b) const { return arg_int(get(key), name(key), b); }
  uint32_t uint32(const char* key) const { return arg_uint32(get(key), name(key)); }
  bool boolean(const char* key) const { return arg_bool(get(key), name(key)); }
  std::string string(const char* key) const { return arg_string(get(key), name(key)); }
  std::vector<std::string> strings(const char* key) const { return arg_strings(get(key), name(key)); }
  Napi::Array array(const char* key, const char* what = "an array") const { return arg_array(get(key), name(key), what); }

 private:
  std::string where_;
  Napi::Object o_;
};

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

// The JS callback of a native object that runs on its own thread and sends
// event batches (Device, PtyServer, SharedPty): start() makes the callback
// and starts the object with a sink posting to it; release() drops it once
// the object stopped (joined), so the process can exit.
template <class Event>
class EventCallback {
 public:
  // start_fn(sink, &err) starts the native object; false: its error is thrown.
  template <class StartFn>
  void start(const Napi::CallbackInfo& info, const char* resource, const std::string& what,
             Napi::Object (*to_js)(Napi::Env, const Event&), StartFn start_fn) {
    Napi::Env env = info.Env();
    Napi::Function on_events = arg_function(info[0], "start: onEvents");
    if (running_) throw Napi::Error::New(env, what + " already started");
    tsfn_ = Napi::ThreadSafeFunction::New(env, on_events, resource, 0, 1);
    std::string err;
    if (!start_fn(batch_to_js<Event>(tsfn_, to_js), &err)) {
      tsfn_.Release();
      throw Napi::Error::New(env, err);
    }
    running_ = true;
  }
  void release() {
    if (!running_) return;
    running_ = false;
    tsfn_.Release();
  }

 private:
  Napi::ThreadSafeFunction tsfn_;
  bool running_ = false;
};

}  // namespace moat
