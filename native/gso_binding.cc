// gso_binding.cc: gso_split for tests (test/unit/gso.test.ts).
//
//   gsoSplit(buf: Buffer, scratchLen = 65535)
//     buf = 10-byte virtio_net_hdr (host order) + IPv4 packet
//     -> { segments: Buffer[] } | { error: 'bad_header' | 'bad_ip' | 'unsupported' | 'too_many' }
// A buf shorter than the header is bad_header.
//   usoMerge(bufs: Buffer[], maxLen = 65000) -> Buffer[]
//     each buf = virtio_net_hdr + IPv4 packet (ipv4_check'd by the caller);
//     merged as the router and device merge consecutive datagrams
//     (coalesce.h): each result is a vnet header + packet, one per run.
// Syscalls: none.
#include <napi.h>

#include <cstring>
#include <vector>

#include "binding_args.h"
#include "coalesce.h"
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
  std::vector<uint8_t> buf(1 << 20);  // the runs, back to back, as in the router's arena
  std::vector<std::pair<size_t, size_t>> frames;  // offset, length
  size_t used = 0;
  UsoRun run;
  size_t run_off = 0;
  auto close = [&] {
    if (run.count == 0) return;
    const size_t n = uso_finish(&run);
    frames.push_back({run_off, n});
  };
  for (uint32_t i = 0; i < in.Length(); i++) {
    Napi::Buffer<uint8_t> b = arg_buffer(in.Get(i), "usoMerge: bufs[" + std::to_string(i) + "]");
    if (b.Length() < kVnetHdrLen || b.Length() > 65535 + kVnetHdrLen || used + 2 * b.Length() > buf.size())
      throw Napi::RangeError::New(env, "usoMerge: a buffer is too short or too long");
    // Copied right behind the run, as the router reads into its arena.
    uint8_t* at = buf.data() + (run.count ? run_off + run.len : used);
    memcpy(at, b.Data(), b.Length());
    const virtio_net_hdr h = vnet_read(at);
    const uint8_t* pkt = at + kVnetHdrLen;
    const size_t len = b.Length() - kVnetHdrLen;
    const int payload = uso_payload(h, pkt, len);
    if (uso_fits(run, pkt, len, payload, max_len)) {
      uso_append(&run, pkt, len);
      used = run_off + run.len;
      continue;
    }
    close();
    used = size_t(at - buf.data());
    if (payload >= 0) {
      run_off = used;
      uso_start(&run, at, b.Length(), payload);
    } else {
      frames.push_back({used, b.Length()});
    }
    used += b.Length();
  }
  close();
  Napi::Array out = Napi::Array::New(env, frames.size());
  for (size_t i = 0; i < frames.size(); i++)
    out.Set(uint32_t(i), Napi::Buffer<uint8_t>::Copy(env, buf.data() + frames[i].first, frames[i].second));
  return out;
}

}  // namespace

void InitGsoBinding(Napi::Env env, Napi::Object exports) {
  exports.Set("gsoSplit", Napi::Function::New(env, GsoSplit, "gsoSplit"));
  exports.Set("usoMerge", Napi::Function::New(env, UsoMerge, "usoMerge"));
}

}  // namespace moat
