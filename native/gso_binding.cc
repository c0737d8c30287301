// gso_binding.cc: gso_split for tests (test/unit/gso.test.ts).
//
//   gsoSplit(buf: Buffer, scratchLen = 65535)
//     buf = 10-byte virtio_net_hdr (host order) + IPv4 packet
//     -> { segments: Buffer[] } | { error: 'bad_header' | 'bad_ip' | 'unsupported' | 'too_many' }
// A buf shorter than the header is bad_header. Syscalls: none.
#include <napi.h>

#include <vector>

#include "gso.h"

namespace moat {
namespace {

const char* gso_error_name(GsoError e) {
  switch (e) {
    case GsoError::none: return "none";
    case GsoError::bad_header: return "bad_header";
    case GsoError::bad_ip: return "bad_ip";
    case GsoError::unsupported: return "unsupported";
    case GsoError::too_many: return "too_many";
  }
  return "unknown";
}

struct Collect {
  Napi::Env env;
  Napi::Array out;
};

void collect(void* ctx, const uint8_t* pkt, size_t len) {
  auto* c = static_cast<Collect*>(ctx);
  c->out.Set(c->out.Length(), Napi::Buffer<uint8_t>::Copy(c->env, pkt, len));
}

Napi::Value GsoSplit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer() || (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNumber()))
    throw Napi::TypeError::New(env, "gsoSplit(buf: Buffer, scratchLen?: number)");
  size_t scratch_len = 65535;
  if (info.Length() > 1 && info[1].IsNumber()) {
    const double d = info[1].As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= 65535)) throw Napi::TypeError::New(env, "scratchLen must be 0..65535");
    scratch_len = size_t(d);
  }
  Napi::Buffer<uint8_t> buf = info[0].As<Napi::Buffer<uint8_t>>();
  Napi::Object r = Napi::Object::New(env);
  if (buf.Length() < kVnetHdrLen) {
    r.Set("error", gso_error_name(GsoError::bad_header));
    return r;
  }
  const virtio_net_hdr h = vnet_read(buf.Data());
  std::vector<uint8_t> scratch(scratch_len ? scratch_len : 1);
  Collect c{env, Napi::Array::New(env)};
  GsoError err;
  const int n = gso_split(h, buf.Data() + kVnetHdrLen, buf.Length() - kVnetHdrLen, scratch.data(), scratch_len,
                          collect, &c, &err);
  if (n < 0) {
    r.Set("error", gso_error_name(err));
    return r;
  }
  r.Set("segments", c.out);
  return r;
}

}  // namespace

void InitGsoBinding(Napi::Env env, Napi::Object exports) {
  exports.Set("gsoSplit", Napi::Function::New(env, GsoSplit, "gsoSplit"));
}

}  // namespace moat
