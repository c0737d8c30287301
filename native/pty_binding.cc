// pty_binding.cc: the addon's PtyServer and SharedPty classes and the
// blocking ptyClient() function (typed in src/native.ts) over pty_router.h,
// pty_shared.h and pty_client.h. Plain arguments in, checked with
// TypeErrors; events cross from the server thread to JS through a
// thread-safe function. Policy lives in src/pty/.
#include <napi.h>

#include <memory>

#include "binding_args.h"
#include "pty_client.h"
#include "pty_router.h"
#include "pty_shared.h"

namespace moat {

namespace {

void read_socket(const ArgObject& o, PtySocketOptions* s) {
  s->path = o.string("path");
  s->mode = uint32_t(o.integer("mode", 0, 07777));
  s->uid = o.integer("uid", -1, 4294967294LL);
  s->gid = o.integer("gid", -1, 4294967294LL);
}

void read_command(const ArgObject& o, PtyCommandOptions* c) {
  c->command = o.string("command");
  c->cwd = o.string("cwd");
  c->uid = o.integer("sessionUid", -1, 4294967294LL);
  c->gid = o.integer("sessionGid", -1, 4294967294LL);
  c->rows = uint16_t(o.integer("rows", 0, 65535));
  c->cols = uint16_t(o.integer("cols", 0, 65535));
  c->env = o.strings("env");
}

Napi::Object event_object(Napi::Env env, const PtyEvent& e) {
  Napi::Object o = Napi::Object::New(env);
  switch (e.type) {
    case PtyEvent::Type::SessionStart:
      o.Set("type", "session_start");
      o.Set("session", Napi::Number::New(env, double(e.session)));
      o.Set("pid", Napi::Number::New(env, e.pid));
      o.Set("peerUid", Napi::Number::New(env, double(e.peer_uid)));
      o.Set("peerPid", Napi::Number::New(env, double(e.peer_pid)));
      break;
    case PtyEvent::Type::SessionEnd:
      o.Set("type", "session_end");
      o.Set("session", Napi::Number::New(env, double(e.session)));
      o.Set("pid", Napi::Number::New(env, e.pid));
      o.Set("status", Napi::Number::New(env, e.status));
      o.Set("reason", e.text);
      break;
    case PtyEvent::Type::Refused:
      o.Set("type", "refused");
      o.Set("peerUid", Napi::Number::New(env, double(e.peer_uid)));
      o.Set("peerPid", Napi::Number::New(env, double(e.peer_pid)));
      o.Set("reason", e.text);
      break;
    case PtyEvent::Type::Error:
      o.Set("type", "error");
      o.Set("message", e.text);
      break;
  }
  return o;
}

}  // namespace

// One wrapper for both servers: they share open/start/stop and the events.
template <class Server, class Options>
class PtyWrap : public Napi::ObjectWrap<PtyWrap<Server, Options>> {
 public:
  using Base = Napi::ObjectWrap<PtyWrap<Server, Options>>;
  static Napi::Function Define(Napi::Env env, const char* name) {
    return Base::DefineClass(env, name,
                             {Base::InstanceMethod("start", &PtyWrap::Start), Base::InstanceMethod("stop", &PtyWrap::Stop),
                              Base::InstanceMethod("stats", &PtyWrap::Stats)});
  }

  explicit PtyWrap(const Napi::CallbackInfo& info) : Base(info) {
    Napi::Env env = info.Env();
    server_ = std::make_unique<Server>(ReadOptions(info[0]));
    napi_add_env_cleanup_hook(env, OnEnvCleanup, this);
  }

  ~PtyWrap() override {
    if (!env_gone_) napi_remove_env_cleanup_hook(this->Env(), OnEnvCleanup, this);
    Shutdown();
  }

 private:
  std::unique_ptr<Server> server_;
  EventCallback<PtyEvent> events_;
  bool env_gone_ = false;

  static Options ReadOptions(const Napi::Value& v);

  static void OnEnvCleanup(void* arg) {
    auto* self = static_cast<PtyWrap*>(arg);
    self->env_gone_ = true;
    self->Shutdown();
  }

  void Shutdown() {
    if (server_) server_->stop();  // joins; its last events are queued before the release
    events_.release();
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    events_.start(info, "moat.Pty", "pty server", event_object,
                  [this](auto sink, std::string* err) { return server_->start(std::move(sink), err); });
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info);
};

template <>
PtyServerOptions PtyWrap<PtyServer, PtyServerOptions>::ReadOptions(const Napi::Value& v) {
  const ArgObject o(v, "PtyServerOptions");
  PtyServerOptions opts;
  read_socket(o, &opts.socket);
  read_command(o, &opts.session);
  opts.framed = o.boolean("framed");
  opts.max_sessions = uint32_t(o.integer("maxSessions", 1, 65536));
  opts.queue_bytes = size_t(o.integer("queueBytes", 8192, int64_t(1) << 30));
  opts.hangup_grace_ms = uint32_t(o.integer("hangupGraceMs", 1, 600000));
  return opts;
}

template <>
SharedPtyOptions PtyWrap<SharedPty, SharedPtyOptions>::ReadOptions(const Napi::Value& v) {
  const ArgObject o(v, "SharedPtyOptions");
  SharedPtyOptions opts;
  read_socket(o, &opts.socket);
  read_command(o, &opts.command);
  opts.max_viewers = uint32_t(o.integer("maxViewers", 1, 4096));
  opts.queue_bytes = size_t(o.integer("queueBytes", 8192, int64_t(1) << 30));
  opts.scrollback_bytes = size_t(o.integer("scrollbackBytes", 0, 1 << 24));
  return opts;
}

template <>
Napi::Value PtyWrap<PtyServer, PtyServerOptions>::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PtyServerStats s = server_->stats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("sessionsStarted", Napi::Number::New(env, double(s.sessions_started)));
  o.Set("sessionsEnded", Napi::Number::New(env, double(s.sessions_ended)));
  o.Set("refused", Napi::Number::New(env, double(s.refused)));
  o.Set("active", Napi::Number::New(env, double(s.active)));
  o.Set("bytesIn", Napi::Number::New(env, double(s.bytes_in)));
  o.Set("bytesOut", Napi::Number::New(env, double(s.bytes_out)));
  o.Set("signals", Napi::Number::New(env, double(s.signals)));
  o.Set("resizes", Napi::Number::New(env, double(s.resizes)));
  o.Set("ignoredFrames", Napi::Number::New(env, double(s.ignored_frames)));
  return o;
}

template <>
Napi::Value PtyWrap<SharedPty, SharedPtyOptions>::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("commandPid", Napi::Number::New(env, server_->command_pid()));
  return o;
}

namespace {

// ptyClient({path, framed}): blocks the calling (main) thread until the
// session ends; returns the exit code. Nothing else runs meanwhile: it is
// meant for `moat pty-connect`, a process that does nothing else.
Napi::Value PtyClient(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ArgObject o(info[0], "ptyClient options");
  PtyClientOptions opts;
  opts.path = o.string("path");
  opts.framed = o.boolean("framed");
  std::string err;
  int rc = pty_client(opts, &err);
  Napi::Object r = Napi::Object::New(env);
  r.Set("code", Napi::Number::New(env, rc));
  r.Set("error", err);
  return r;
}

}  // namespace

void InitPtyBinding(Napi::Env env, Napi::Object exports) {
  exports.Set("PtyServer", PtyWrap<PtyServer, PtyServerOptions>::Define(env, "PtyServer"));
  exports.Set("SharedPty", PtyWrap<SharedPty, SharedPtyOptions>::Define(env, "SharedPty"));
  exports.Set("ptyClient", Napi::Function::New(env, PtyClient, "ptyClient"));
}

}  // namespace moat
