// tun.h: opening tun devices, and entering a network namespace.
//
// Syscalls: open(/dev/net/tun), ioctl(TUNSETIFF), ioctl(SIOCGIFFLAGS/
// SIOCSIFFLAGS) on an AF_INET datagram socket to bring the link up,
// getifaddrs, open(netns file) + setns(CLONE_NEWNET).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moat {

// Creates the tun device `name` (or attaches to it if it exists and is free),
// opened IFF_TUN | IFF_NO_PI, non-blocking and close-on-exec, and sets the
// link up. Returns the fd, or -1 with *err describing the failure.
int tun_open(const std::string& name, std::string* err);

// The IPv4 addresses (host order) currently assigned to interface `name` in
// the calling thread's network namespace.
std::vector<uint32_t> interface_addresses(const std::string& name);

// Moves the calling thread into the network namespace at `path` (a file such
// as /run/netns/NAME). Only this thread moves; other threads keep theirs.
// Returns false with *err on failure. An empty path is a no-op.
bool enter_netns(const std::string& path, std::string* err);

}  // namespace moat
