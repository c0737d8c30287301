/*
 * csum.h: the Internet checksum (RFC 1071) over n bytes, for the generators
 * that build IPv4 and ICMP headers themselves (peers.c, frame-flood.c).
 */
#pragma once
#include <stddef.h>
#include <stdint.h>

static inline uint16_t csum(const unsigned char *p, size_t n) {
  uint32_t s = 0;
  for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) s += (uint32_t)p[n - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}
