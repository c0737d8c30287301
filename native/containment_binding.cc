// containment_binding.cc: what keeps a tenant contained, for the TypeScript
// side (src/vassal/remove-dir.ts, src/privileges.ts).
//
//   removeTree(parent: string, name: string, limits: { maxDepth, maxEntries })
//     -> Promise<{ existed: boolean, removed: number }>
//     remove_tree.h on a libuv pool thread (a tenant's tree may be large; the
//     emperor's loop goes on meanwhile); rejects with an Error naming the path.
//   hardenProcess() -> { lastCap: number, allThreads: boolean, note: string }
//     harden.h, on the calling (JS) thread; throws an Error when it failed.
#include <napi.h>

#include <string>

#include "binding_args.h"
#include "harden.h"
#include "remove_tree.h"

namespace moat {
namespace {

// Native code's own ceiling: one fd and one buffer per level.
constexpr int64_t kMaxDepthCeiling = 1024;

class RemoveTreeWorker : public Napi::AsyncWorker {
 public:
  RemoveTreeWorker(Napi::Env env, std::string parent, std::string name, RemoveTreeLimits limits)
      : Napi::AsyncWorker(env, "moat:removeTree"),
        deferred_(Napi::Promise::Deferred::New(env)),
        parent_(std::move(parent)),
        name_(std::move(name)),
        limits_(limits) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override { ok_ = remove_tree(parent_, name_, limits_, &report_, &err_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (!ok_) {
      deferred_.Reject(Napi::Error::New(env, err_).Value());
      return;
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("existed", Napi::Boolean::New(env, report_.existed));
    r.Set("removed", Napi::Number::New(env, double(report_.removed)));
    deferred_.Resolve(r);
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string parent_, name_;
  RemoveTreeLimits limits_;
  RemoveTreeReport report_;
  std::string err_;
  bool ok_ = false;
};

Napi::Value RemoveTree(const Napi::CallbackInfo& info) {
  std::string parent = arg_string(info[0], "removeTree: parent");
  std::string name = arg_string(info[1], "removeTree: name");
  ArgObject o(info[2], "removeTree: limits");
  RemoveTreeLimits limits{int(o.integer("maxDepth", 0, kMaxDepthCeiling)), uint64_t(o.integer("maxEntries", 1, int64_t(1) << 40))};
  auto* w = new RemoveTreeWorker(info.Env(), std::move(parent), std::move(name), limits);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value HardenProcess(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HardenReport report;
  std::string err;
  if (!harden_process(&report, &err)) throw Napi::Error::New(env, err);
  Napi::Object r = Napi::Object::New(env);
  r.Set("lastCap", Napi::Number::New(env, report.last_cap));
  r.Set("allThreads", Napi::Boolean::New(env, report.all_threads));
  r.Set("note", Napi::String::New(env, report.note));
  return r;
}

}  // namespace

void InitContainmentBinding(Napi::Env env, Napi::Object exports) {
  exports.Set("removeTree", Napi::Function::New(env, RemoveTree, "removeTree"));
  exports.Set("hardenProcess", Napi::Function::New(env, HardenProcess, "hardenProcess"));
}

}  // namespace moat
