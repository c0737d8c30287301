// gso_binding.cc: gso_split for tests (test/unit/gso.test.ts).
//
//   gsoSplit(buf: Buffer, scratchLen = 65535)
//     buf = 10-byte virtio_net_hdr (host order) + IPv4 packet
//     -> { segments: Buffer[] } | { error: 'bad_header' | 'bad_ip' | 'unsupported' | 'too_many' }
// A buf shorter than the header is bad_header.
//   usoMerge(bufs: Buffer[], maxLen = 65000, mods?: number[]) -> Buffer[]
//     each buf = virtio_net_hdr + IPv4 packet (ipv4_check'd by the caller),
//     a frame of type mods[i] (default kModVnet, 3); merged as the router
//     merges a held peer's queue (coalesce.h, uso_merge_frames): each
//     result is a frame's payload, one per run or frame left as it was.
// Syscalls: none.
#include <napi.h>

#include <cstring>
#include <vector>

#include "binding_args.h"
#include "coalesce.h"
#include "frame.h"
#include "offload.h"
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
  Napi::Buffer<uint8_t> buf = arg_buffer(info[0], "gsoSplit: buf");
  const size_t scratch_len = info[1].IsUndefined() ? 65535 : size_t(arg_int(info[1], "gsoSplit: scratchLen", 0, 65535));
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

Napi::Value UsoMerge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array in = arg_array(info[0], "usoMerge: bufs", "an array of Buffers");
  // An IPv4 super-packet: its total length is 16 bits.
  const size_t max_len = info[1].IsUndefined() ? 65000 : size_t(arg_int(info[1], "usoMerge: maxLen", 0, 65535));
  const bool has_mods = !info[2].IsUndefined();
  Napi::Array mods = has_mods ? arg_array(info[2], "usoMerge: mods", "an array of frame types") : Napi::Array::New(env);
  if (has_mods && mods.Length() != in.Length()) throw Napi::RangeError::New(env, "usoMerge: one frame type per buffer");
  // A held peer's queue: each buffer one frame behind a frame header.
  std::vector<uint8_t> q;
  for (uint32_t i = 0; i < in.Length(); i++) {
    Napi::Buffer<uint8_t> b = arg_buffer(in.Get(i), "usoMerge: bufs[" + std::to_string(i) + "]");
    if (b.Length() < kVnetHdrLen || b.Length() > 65535 || q.size() + b.Length() > (1 << 22))
      throw Napi::RangeError::New(env, "usoMerge: a buffer is too short or too long");
    const uint8_t mod2 = has_mods ? uint8_t(arg_int(mods.Get(i), "usoMerge: mods[" + std::to_string(i) + "]", 0, 255)) : kModVnet;
    const size_t at = q.size();
    q.resize(at + kFrameHeaderSize + b.Length());
    encode_frame_header(q.data() + at, uint16_t(b.Length()), mod2);
    memcpy(q.data() + at + kFrameHeaderSize, b.Data(), b.Length());
  }
  std::vector<std::pair<const uint8_t*, size_t>> frames;
  uso_merge_frames(q.data(), q.size(), max_len, [&](uint8_t* f, size_t n, uint32_t) {
    frames.push_back({f + kFrameHeaderSize, n});
  });
  Napi::Array out = Napi::Array::New(env, frames.size());
  for (size_t i = 0; i < frames.size(); i++)
    out.Set(uint32_t(i), Napi::Buffer<uint8_t>::Copy(env, frames[i].first, frames[i].second));
  return out;
}

}  // namespace

void InitGsoBinding(Napi::Env env, Napi::Object exports) {
  exports.Set("gsoSplit", Napi::Function::New(env, GsoSplit, "gsoSplit"));
  exports.Set("usoMerge", Napi::Function::New(env, UsoMerge, "usoMerge"));
}

}  // namespace moat
