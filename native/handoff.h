// handoff.h: a moat device handing its tun to the router (docs/one-hop.md).
//
// With offloads negotiated, a router that offers kCapHandoff in its hello
// may be sent one kModHandoff frame (empty payload) carrying the vassal's
// tun fd as SCM_RIGHTS on the same sendmsg(). The router then reads and
// writes that tun itself, judging every packet exactly as it judges a
// kModVnet frame: one hop instead of two. The device keeps its own copy
// (a router restart must not remove the vassal's interface) and stops
// reading the tun until its connection breaks. A uWSGI router never offers
// the bit, and a uWSGI device never sends the frame.
//
// Everything received is untrusted: a peer may send any fd, several fds,
// an fd without the frame or the frame without an fd. recv_with_fd keeps at
// most one fd and closes the rest; tun_handoff_check accepts only a tun
// configured as a moat device's (IFF_TUN | IFF_NO_PI | IFF_VNET_HDR, a
// 10-byte header).
// Syscalls: recvmsg, sendmsg (MSG_NOSIGNAL | MSG_DONTWAIT), fstat,
// ioctl(TUNGETIFF, TUNGETVNETHDRSZ), fcntl, close.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <sys/types.h>

#include "fd_closer.h"

namespace moat {

constexpr uint8_t kModHandoff = 4;     // frame modifier2: the tun fd rides with it
constexpr uint16_t kCapHandoff = 8;    // in the router's hello: it takes a device's tun

// read() that also takes an fd sent with the bytes: *fd is -1 or the one fd
// received (close-on-exec); any further fds, and a truncated set, go to
// closer at once (any of them may be a tun's last reference: fd_closer.h).
// Returns what recvmsg returns (errno set on -1).
ssize_t recv_with_fd(int sock, uint8_t* buf, size_t len, int* fd, FdCloser* closer);

// One kModHandoff frame with fd attached. Returns 0, or the errno (EAGAIN:
// the socket is full, try again when it is writable).
int send_handoff(int sock, int fd);

// True if fd is a tun as a moat device opens it with offloads; then made
// non-blocking (the device's copy shares the flag: it no longer reads).
// False with *why otherwise.
bool tun_handoff_check(int fd, std::string* why);

}  // namespace moat
