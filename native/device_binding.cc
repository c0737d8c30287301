// device_binding.cc: the addon's Device class (typed as NativeDevice in
// src/native.ts) over moat::Device (device.h). Plain arguments in, checked
// with TypeErrors; events cross from the device thread to JS through a
// thread-safe function, one array per loop iteration. Policy (names, paths,
// defaults) lives in src/device/device.ts.
#include <napi.h>

#include <cmath>
#include <memory>

#include "binding_args.h"
#include "device.h"

namespace moat {

namespace {

std::string need_string(const Napi::Object& o, const char* key) { return arg_string(o, "DeviceOptions.", key); }

int64_t need_int(const Napi::Object& o, const char* key, int64_t lo, int64_t hi) {
  return arg_int(o, "DeviceOptions.", key, lo, hi);
}

Napi::Object event_object(Napi::Env env, const DeviceEvent& e) {
  Napi::Object o = Napi::Object::New(env);
  switch (e.type) {
    case DeviceEvent::Type::Connected:
      o.Set("type", "connected");
      break;
    case DeviceEvent::Type::Disconnected:
      o.Set("type", "disconnected");
      o.Set("reason", e.text);
      break;
    case DeviceEvent::Type::ConnectFailed:
      o.Set("type", "connect_failed");
      o.Set("attempt", Napi::Number::New(env, e.attempt));
      o.Set("error", e.text);
      o.Set("retryMs", Napi::Number::New(env, e.retry_ms));
      break;
    case DeviceEvent::Type::Error:
      o.Set("type", "error");
      o.Set("message", e.text);
      break;
  }
  return o;
}

}  // namespace

class DeviceWrap : public Napi::ObjectWrap<DeviceWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Device",
                       {InstanceMethod("start", &DeviceWrap::Start), InstanceMethod("stop", &DeviceWrap::Stop),
                        InstanceMethod("stats", &DeviceWrap::Stats)});
  }

  explicit DeviceWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "Device needs an options object");
    Napi::Object o = info[0].As<Napi::Object>();
    DeviceOptions opts;
    opts.name = need_string(o, "name");
    opts.netns = need_string(o, "netns");
    opts.socket_path = need_string(o, "socketPath");
    opts.dir_fd = int(need_int(o, "dirFd", -1, INT32_MAX));
    opts.max_frame = size_t(need_int(o, "maxFrame", 1, 65535));
    opts.queue_bytes = size_t(need_int(o, "queueBytes", 4 + int64_t(opts.max_frame), int64_t(1) << 30));
    opts.reconnect_min_ms = uint32_t(need_int(o, "reconnectMinMs", 1, 3600000));
    opts.reconnect_max_ms = uint32_t(need_int(o, "reconnectMaxMs", int64_t(opts.reconnect_min_ms), 3600000));
    if (!o.Get("sndbuf").IsUndefined()) opts.sndbuf = uint32_t(need_int(o, "sndbuf", 0, int64_t(1) << 26));
    if (!o.Get("busyPollUs").IsUndefined()) opts.busy_poll_us = uint32_t(need_int(o, "busyPollUs", 0, 1000));
    Napi::Value off = o.Get("offload");  // optional, absent: off
    if (!off.IsUndefined() && !off.IsBoolean()) throw Napi::TypeError::New(env, "DeviceOptions.offload must be a boolean");
    opts.offload = off.IsBoolean() && off.As<Napi::Boolean>().Value();
    if (opts.name.empty() || opts.name.size() > 15) throw Napi::TypeError::New(env, "DeviceOptions.name must be 1-15 characters");
    device_ = std::make_unique<Device>(std::move(opts));
    // A running device must not outlive its environment (worker exit, process teardown).
    napi_add_env_cleanup_hook(env, OnEnvCleanup, this);
  }

  ~DeviceWrap() override {
    if (!env_gone_) napi_remove_env_cleanup_hook(Env(), OnEnvCleanup, this);
    Shutdown();
  }

 private:
  std::unique_ptr<Device> device_;
  Napi::ThreadSafeFunction tsfn_;
  bool running_ = false;
  bool env_gone_ = false;

  static void OnEnvCleanup(void* arg) {
    auto* self = static_cast<DeviceWrap*>(arg);
    self->env_gone_ = true;
    self->Shutdown();
  }

  void Shutdown() {
    if (device_) device_->stop();  // joins: no event is queued after this
    if (running_) {
      running_ = false;
      tsfn_.Release();
    }
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "start needs an event callback");
    if (running_) throw Napi::Error::New(env, "device already started");
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "moat.Device", 0, 1);
    Napi::ThreadSafeFunction tsfn = tsfn_;
    std::string err;
    bool ok = device_->start(
        batch_to_js<DeviceEvent>(tsfn, event_object),
        &err);
    if (!ok) {
      tsfn_.Release();
      throw Napi::Error::New(env, err);
    }
    running_ = true;
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    DeviceStatsSnapshot s = device_->stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("connected", Napi::Boolean::New(env, s.connected));
    o.Set("reconnects", Napi::Number::New(env, double(s.reconnects)));
    o.Set("toRouterPackets", Napi::Number::New(env, double(s.to_router_packets)));
    o.Set("toRouterBytes", Napi::Number::New(env, double(s.to_router_bytes)));
    o.Set("fromRouterPackets", Napi::Number::New(env, double(s.from_router_packets)));
    o.Set("fromRouterBytes", Napi::Number::New(env, double(s.from_router_bytes)));
    Napi::Object drops = Napi::Object::New(env);
    for (int i = 0; i < kDropCount; i++) drops.Set(drop_name(Drop(i)), Napi::Number::New(env, double(s.drops[i])));
    drops.Set(kDisconnectedDropName, Napi::Number::New(env, double(s.disconnected_drops)));
    o.Set("drops", drops);
    o.Set("offload", Napi::Boolean::New(env, s.offload));
    o.Set("vnetTx", Napi::Number::New(env, double(s.vnet_tx)));
    o.Set("gsoTx", Napi::Number::New(env, double(s.gso_tx)));
    o.Set("vnetRx", Napi::Number::New(env, double(s.vnet_rx)));
    o.Set("gsoRx", Napi::Number::New(env, double(s.gso_rx)));
    o.Set("gsoSplit", Napi::Number::New(env, double(s.gso_split)));
    o.Set("gsoSegments", Napi::Number::New(env, double(s.gso_segments)));
    o.Set("usoTx", Napi::Number::New(env, double(s.uso_tx)));
    o.Set("usoSegments", Napi::Number::New(env, double(s.uso_segments)));
    o.Set("busyPolls", Napi::Number::New(env, double(s.busy_polls)));
    o.Set("busyPollCaught", Napi::Number::New(env, double(s.busy_poll_caught)));
    o.Set("busyPollNs", Napi::Number::New(env, double(s.busy_poll_ns)));
    return o;
  }
};

void InitDeviceBinding(Napi::Env env, Napi::Object exports) {
  exports.Set("Device", DeviceWrap::Define(env));
}

}  // namespace moat
