#!/usr/bin/env python3
"""make_seeds.py: writes the seed corpora of the fuzz harnesses to
test/fuzz/corpus/<harness>/ (run from the repository root; idempotent).

fuzz_frame's input is <stream bytes> then its settings, which
FuzzedDataProvider takes from the end: the last byte picks the payload limit
(value % 5: 0 = 8188, 1 = 1500, 2 = 65535, 3 = 576), the byte before it the
number of chunk sizes (% 17), then 3 bytes per chunk size. fuzz_classifier's
seeds are deterministic pseudo-random byte strings of a few lengths (its
input is all FuzzedDataProvider choices, so any bytes are meaningful).
"""
import hashlib
import os
import random
import struct


def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s > 0xffff:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def ipv4(src, dst, proto, payload, frag=0x4000, ihl=5):
    opts = b'\x01' * (ihl * 4 - 20)
    total = ihl * 4 + len(payload)
    h = struct.pack('!BBHHHBBH4s4s', 0x40 | ihl, 0, total, 0x1234, frag, 64, proto, 0,
                    bytes(src), bytes(dst)) + opts
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    return h + payload


A, G = [10, 0, 0, 2], [10, 0, 0, 1]
icmp = ipv4(A, G, 1, b'\x08\x00\x00\x00\x00\x01\x00\x01moat-ping')
udp = ipv4(A, G, 17, struct.pack('!HHHH', 5000, 53, 12, 0) + b'abcd')
tcp = ipv4(A, G, 6, struct.pack('!HHIIBBHHH', 40000, 80, 1, 0, 0x50, 2, 65535, 0, 0))
frag = ipv4(A, G, 17, b'later-fragment', frag=0x0010)
shortl4 = ipv4(A, G, 6, b'\x00\x50')
withopts = ipv4(A, G, 1, b'\x08\x00\x00\x00', ihl=6)
ipv6 = bytes([0x60] + [0] * 3) + struct.pack('!HBB', 8, 58, 255) + bytes(32) + bytes([133] + [0] * 7)
badlen = bytearray(icmp)
badlen[3] += 8
big = ipv4(A, G, 17, struct.pack('!HHHH', 1, 2, 8, 0) + bytes(1500 - 28))


def frame(p, mod2=0, mod1=0, size=None):
    n = len(p) if size is None else size
    return bytes([mod1, n & 255, n >> 8, mod2]) + p


def settings(limit, chunks):
    tail = b''
    for c in reversed(chunks):
        tail += struct.pack('<I', c)[:3][::-1]
    return tail + bytes([len(chunks), limit])


frame_seeds = {
    'icmp': frame(icmp) + settings(0, []),
    'mixed': b''.join(frame(p) for p in [icmp, udp, tcp, frag, shortl4, withopts]) + settings(1, [1, 7, 100]),
    'ipv6': frame(ipv6) + frame(icmp) + settings(0, [3]),
    'bad-length': frame(bytes(badlen)) + settings(0, [2]),
    'rule-block': frame(b'deny 0.0.0.0 0.0.0.0', 1) + frame(icmp, 2) + frame(icmp, 0, 1) + settings(0, [5]),
    'oversize': frame(icmp) + frame(b'', size=65535) + b'0123456789' + settings(0, [4]),
    'oversize-1501': frame(b'', size=1501) + settings(1, []),
    'max-1500': frame(big) + frame(icmp) + settings(1, [1000, 1]),
    'byte-at-a-time': frame(udp) + frame(tcp) + settings(0, [1]),
    'partial': frame(icmp) + frame(udp)[:-3] + settings(2, [9]),
    'empty-frames': frame(b'') * 8 + settings(3, []),
    'raw-packet': icmp + settings(4, []),
}

rng = random.Random(8)
classifier_seeds = {'empty': b'', 'zeros': bytes(64)}
for n in (16, 64, 256, 1024, 4096):
    classifier_seeds['random-%d' % n] = bytes(rng.randrange(256) for _ in range(n))


def write(harness, seeds):
    d = os.path.join('test', 'fuzz', 'corpus', harness)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, 'seed-' + name), 'wb') as f:
            f.write(data)
    print('%s: %d seeds' % (harness, len(seeds)))


write('fuzz_frame', frame_seeds)
write('fuzz_classifier', classifier_seeds)
