// device_binding.cc: the addon's Device class (typed as NativeDevice in
// src/native.ts) over moat::Device (device.h). Plain arguments in, checked
// with TypeErrors naming the field (binding_args.h; option values within
// option_bounds.h's limits); events cross from the device thread to JS
// through a thread-safe function, one array per loop iteration. Policy
// (names, paths, defaults) lives in src/device/device.ts.
#include <napi.h>

#include <algorithm>
#include <climits>
#include <memory>

#include "binding_args.h"
#include "device.h"
#include "option_bounds.h"

namespace moat {

namespace {

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
    const ArgObject o(info[0], "DeviceOptions");
    DeviceOptions opts;
    opts.name = o.string("name");
    if (opts.name.empty() || opts.name.size() > 15)
      throw Napi::TypeError::New(env, "DeviceOptions.name: expected 1-15 characters, got '" + opts.name + "'");
    opts.netns = o.string("netns");
    opts.socket_path = o.string("socketPath");
    opts.dir_fd = int(o.integer("dirFd", -1, INT32_MAX));
    opts.max_frame = size_t(o.integer("maxFrame", kMaxFrameBounds));
    opts.queue_bytes = size_t(o.integer("queueBytes", std::max<int64_t>(kQueueBytesBounds.lo, 4 + int64_t(opts.max_frame)),
                                        kQueueBytesBounds.hi));
    opts.reconnect_min_ms = uint32_t(o.integer("reconnectMinMs", kReconnectMsBounds));
    opts.reconnect_max_ms = uint32_t(o.integer("reconnectMaxMs", int64_t(opts.reconnect_min_ms), kReconnectMsBounds.hi));
    // Required, like every option value (no defaults in native code).
    opts.sndbuf = uint32_t(o.integer("sndbuf", kSndbufBounds));
    opts.busy_poll_us = uint32_t(o.integer("busyPollUs", kBusyPollUsBounds));
    opts.offload = o.boolean("offload");
    opts.handoff = o.boolean("handoff");
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
  EventCallback<DeviceEvent> events_;
  bool env_gone_ = false;

  static void OnEnvCleanup(void* arg) {
    auto* self = static_cast<DeviceWrap*>(arg);
    self->env_gone_ = true;
    self->Shutdown();
  }

  void Shutdown() {
    if (device_) device_->stop();  // joins: no event is queued after this
    events_.release();
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    events_.start(info, "moat.Device", "device", event_object,
                  [this](auto sink, std::string* err) { return device_->start(std::move(sink), err); });
    return info.Env().Undefined();
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
    o.Set("handoff", Napi::Boolean::New(env, s.handoff));
    o.Set("handoffs", Napi::Number::New(env, double(s.handoffs)));
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
