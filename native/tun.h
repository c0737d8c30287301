// tun.h: opening tun devices, and entering a network namespace.
//
// Syscalls: open(/dev/net/tun), ioctl(TUNSETIFF, TUNSETVNETHDRSZ,
// TUNSETOFFLOAD, TUNSETSTEERINGEBPF), bpf(BPF_PROG_LOAD), a NETLINK_ROUTE
// datagram socket (gso_max_size), ioctl(SIOCGIFFLAGS/
// SIOCSIFFLAGS) on an AF_INET datagram socket to bring the link up,
// getifaddrs, open(netns file) + setns(CLONE_NEWNET), write/writev.
#pragma once
#include <sys/uio.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "gso.h"

namespace moat {

// Creates the tun device `name` (or attaches to it if it exists and is free),
// opened IFF_TUN | IFF_NO_PI, non-blocking and close-on-exec, and sets the
// link up. Returns the fd, or -1 with *err describing the failure.
int tun_open(const std::string& name, std::string* err);

// As tun_open, with vnet true: also IFF_VNET_HDR with a 10-byte
// virtio_net_hdr before every packet read or written (TUNSETVNETHDRSZ), all
// offloads off (TUNSETOFFLOAD 0), and the device's gso_max_size capped to
// gso_max (netlink; best effort: a kernel that refuses leaves it, and
// oversize super-packets are split by the reader instead).
int tun_open(const std::string& name, bool vnet, uint32_t gso_max, std::string* err);

// As tun_open(name, vnet, gso_max), with `queues` fds of the device
// (IFF_MULTI_QUEUE when queues > 1), each its own queue of packets toward
// the reader. Fewer than asked when the device exists without multi_queue
// or refuses more queues: *note then says so and why. false with *err (and
// no fd open) when not even one queue opened.
bool tun_open_queues(const std::string& name, bool vnet, uint32_t gso_max, unsigned queues,
                     std::vector<int>* fds, std::string* note, std::string* err);

// Makes the multi-queue device of fd queue each packet toward its readers
// by its IPv4 destination (TUNSETSTEERINGEBPF, a three-instruction socket
// filter program): one address's packets always share a queue, and
// addresses whose low 16 bits differ modulo the queues never do. Without
// it the kernel steers by flow hash, which puts flows to different
// destinations in one queue as often as not. Needs CAP_BPF (or
// CAP_SYS_ADMIN) at the call only. false with *err.
bool tun_steer_by_destination(int fd, std::string* err);

// The virtio_net_hdr of a plain packet (no offload asked for).
inline constexpr uint8_t kZeroVnetHdr[kVnetHdrLen] = {};

// Writes one packet to a tun in one call (writev with zero_hdr: a zeroed
// virtio_net_hdr in front, for a vnet tun given a packet without one).
// EINTR is retried; true if the tun took it whole. Inline: tun_batch.h
// falls back to it and is used without tun.cc (bench/gen/tunrelay.cc).
inline bool tun_write(int fd, const uint8_t* pkt, size_t len, bool zero_hdr) {
  struct iovec iov[2] = {{const_cast<uint8_t*>(kZeroVnetHdr), kVnetHdrLen}, {const_cast<uint8_t*>(pkt), len}};
  const int first = zero_hdr ? 0 : 1;
  const size_t want = zero_hdr ? kVnetHdrLen + len : len;
  ssize_t n;
  do n = writev(fd, iov + first, 2 - first); while (n < 0 && errno == EINTR);
  return n == ssize_t(want);
}

// TUNSETOFFLOAD with the TUN_F_* flags. With TUN_F_USO4/6 refused (kernels
// before 6.2) it retries without them. Returns the flags in effect, or -1
// with *err.
int tun_set_offload(int fd, unsigned flags, std::string* err);

// The IPv4 addresses (host order) currently assigned to interface `name` in
// the calling thread's network namespace.
std::vector<uint32_t> interface_addresses(const std::string& name);

// Moves the calling thread into the network namespace at `path` (a file such
// as /run/netns/NAME). Only this thread moves; other threads keep theirs.
// Returns false with *err on failure. An empty path is a no-op.
bool enter_netns(const std::string& path, std::string* err);

}  // namespace moat
