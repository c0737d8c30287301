#!/usr/bin/env python3
"""make_gso_seeds.py: writes fuzz_gso's seed corpus to test/fuzz/corpus/fuzz_gso/
(run from the repository root; idempotent).

An input is a 10-byte struct virtio_net_hdr in little-endian (the host order of
the machines moat runs on) followed by an IPv4 packet: TCP and UDP super-packets
as a tun device with TSO/USO hands them out (pseudo-header sum in the L4
checksum field, NEEDS_CSUM), a few GSO_NONE packets, and a few near misses.
"""
import os
import struct

NEEDS_CSUM = 1
NONE, TCPV4, UDP_L4, ECN = 0, 1, 5, 0x80


def fold(s):
    while s > 0xffff:
        s = (s & 0xffff) + (s >> 16)
    return s


def sum16(b):
    if len(b) % 2:
        b += b'\0'
    return sum(struct.unpack('!%dH' % (len(b) // 2), b))


def vnet(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset):
    return struct.pack('<BBHHHH', flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def packet(proto, payload, ip_opts=0, tcp_opts=0, flags=0x18, ident=0x1234, seq=1000):
    ihl = 20 + 4 * ip_opts
    l4h = 20 + 4 * tcp_opts if proto == 6 else 8
    total = ihl + l4h + len(payload)
    src, dst = bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1])
    ip = struct.pack('!BBHHHBBH4s4s', 0x40 | (ihl // 4), 0, total, ident, 0x4000, 64, proto, 0, src, dst)
    ip += b'\x01' * (ihl - 20)
    ip = ip[:10] + struct.pack('!H', ~fold(sum16(ip)) & 0xffff) + ip[12:]
    partial = fold(sum16(src + dst) + proto + total - ihl)  # CHECKSUM_PARTIAL's field
    if proto == 6:
        l4 = struct.pack('!HHIIBBHHH', 40000, 80, seq, 77, (l4h // 4) << 4, flags, 500, partial, 0)
        l4 += b'\x01' * (l4h - 20)
    else:
        l4 = struct.pack('!HHHH', 5000, 53, total - ihl, partial)
    return ip + l4 + payload, ihl, ihl + l4h


def data(n):
    return bytes((i * 7 + 3) & 255 for i in range(n))


seeds = {}
p, ihl, hl = packet(6, data(4000))
seeds['tcp-3seg'] = vnet(NEEDS_CSUM, TCPV4, hl, 1448, ihl, 16) + p
p, ihl, hl = packet(6, data(3001), ip_opts=1, tcp_opts=3, flags=0x99, ident=0xffff, seq=0xffffff00)
seeds['tcp-opts-ecn-fin'] = vnet(NEEDS_CSUM, TCPV4 | ECN, hl, 1000, ihl, 16) + p
p, ihl, hl = packet(6, data(500))
seeds['tcp-one-seg-fwd-hdrlen'] = vnet(NEEDS_CSUM, TCPV4, len(p), 1448, ihl, 16) + p
p, ihl, hl = packet(17, data(3000))
seeds['udp-3seg'] = vnet(NEEDS_CSUM, UDP_L4, hl, 1200, ihl, 6) + p
p, ihl, hl = packet(17, data(129 * 8))
seeds['udp-too-many'] = vnet(NEEDS_CSUM, UDP_L4, hl, 8, ihl, 6) + p
p, ihl, hl = packet(17, data(128 * 8))
seeds['udp-128seg'] = vnet(NEEDS_CSUM, UDP_L4, 0, 8, ihl, 6) + p
p, ihl, hl = packet(17, data(33))
seeds['none-udp-csum'] = vnet(NEEDS_CSUM, NONE, 0, 0, ihl, 6) + p
p, ihl, hl = packet(6, data(0), flags=0x02)
seeds['none-tcp-syn'] = vnet(NEEDS_CSUM, NONE, hl, 0, ihl, 16) + p
seeds['none-plain'] = vnet(0, NONE, 0, 0, 0, 0) + p
seeds['gso-size-0'] = vnet(NEEDS_CSUM, TCPV4, hl, 0, ihl, 16) + p
seeds['tcpv6-type'] = vnet(NEEDS_CSUM, 4, hl, 100, ihl, 16) + p
seeds['header-only'] = vnet(0, NONE, 0, 0, 0, 0)
# Headers only, and one byte short of them: the L4 header bounds.
p, ihl, hl = packet(17, b'')
seeds['udp-no-payload'] = vnet(NEEDS_CSUM, UDP_L4, hl, 100, ihl, 6) + p
seeds['udp-7-byte-l4'] = vnet(NEEDS_CSUM, UDP_L4, 0, 100, ihl, 6) + p[:2] + struct.pack('!H', len(p) - 1) + p[4:-1]
p, ihl, hl = packet(6, b'', tcp_opts=1)
seeds['tcp-no-payload'] = vnet(NEEDS_CSUM, TCPV4, hl, 100, ihl, 16) + p
seeds['tcp-short-options'] = vnet(NEEDS_CSUM, TCPV4, 0, 100, ihl, 16) + p[:2] + struct.pack('!H', len(p) - 1) + p[4:-1]

d = os.path.join('test', 'fuzz', 'corpus', 'fuzz_gso')
os.makedirs(d, exist_ok=True)
for name, b in seeds.items():
    with open(os.path.join(d, 'seed-' + name), 'wb') as f:
        f.write(b)
print('fuzz_gso: %d seeds' % len(seeds))
