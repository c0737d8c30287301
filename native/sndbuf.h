// sndbuf.h: the send buffer of a router<->device connection.
//
// The kernel's default (net.core.wmem_default, ~208 KB) holds three 64 KB
// offload frames, so the sender fills it and waits for the reader every few
// frames, and the two wake each other constantly. 4 MiB lets them run apart:
// TCP through moat +20-25% on the bench (docs/scale.md). The device asks it
// by default, the router only when configured (tuntap-device-sndbuf and
// tuntap-router-sndbuf in src/config/options-table.ts). The buffer is
// only memory while frames wait in it: it bounds what a peer that stops
// reading can pin in the kernel (on top of the router's own queue).
// SO_SNDBUFFORCE needs CAP_NET_ADMIN; without it SO_SNDBUF applies, capped
// by net.core.wmem_max (the router process of `moat emperor` runs without
// capabilities: raise wmem_max for it, docs/scale.md).
#pragma once
#include <sys/socket.h>

#include <cstdint>

namespace moat {

// 0: the kernel's default. Failure is not an error: the default stays.
inline void set_sndbuf(int fd, uint32_t bytes) {
  if (bytes == 0) return;
  const int v = int(bytes);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) != 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
}

}  // namespace moat
