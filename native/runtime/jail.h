// jail.h: the set-up steps of a vassal that change the kernel's view of it:
// addresses and routes in its network namespace, its mounts and pivot-root,
// and the privilege drop. Each returns false with *err naming the step, the
// path or device and the errno text.
//
// Limits: IPv4 only, one default route; the new root must already hold the
// directories /proc, /tmp, the put_old directory and the vassal-dir mount
// point (the root is mounted read-only, nothing is created in it; /dev, if
// there, is replaced by a tmpfs of moat's own).
//
// Syscalls: socket(AF_INET, SOCK_DGRAM) + ioctl(SIOCSIFADDR, SIOCSIFNETMASK,
// SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCADDRT); mount, umount2, pivot_root, chdir,
// realpath (lstat/readlink), mount_setattr; setgroups, setgid, setuid, getuid, geteuid,
// getgid, getegid, prctl(PR_SET_NO_NEW_PRIVS).
#pragma once
#include <cstdint>
#include <string>

namespace moat {
namespace vassal {

// Sets `dev`'s IPv4 address (network byte order) and netmask.
bool set_address(const std::string& dev, uint32_t addr, int prefix_bits, std::string* err);
// Sets the link up (IFF_UP), e.g. "lo".
bool set_link_up(const std::string& dev, std::string* err);
// Adds a default route via `gateway` (network byte order) on `dev`.
bool add_default_route(const std::string& dev, uint32_t gateway, std::string* err);

// Makes every mount of this (new) mount namespace private, so nothing the
// vassal mounts reaches the host and nothing of the host's reaches it.
bool make_mounts_private(std::string* err);

// Bind-mounts host_dir (read-write, nosuid, nodev) at `target`.
bool bind_dir(const std::string& host_dir, const std::string& target, std::string* err);

// uWSGI's pivot-root with moat's jail around it: bind new_root onto itself,
// make it and its submounts read-only, nosuid and nodev, bind the vassal dir
// inside it (if host_dir is not empty, read-write), mount a fresh proc (for this pid namespace) on /proc
// and a tmpfs on /tmp, pivot_root into it, chdir / and detach the old root.
// put_old is absolute under new_root or relative to it, as pivot_root(2)
// takes it with new_root as the working directory. With `devpts` (a pty
// server is configured) a new devpts instance is mounted on /dev/pts (the new
// root needs /dev/pts, and /dev/ptmx as a symlink to pts/ptmx or a ptmx
// device node, for posix_openpt).
bool pivot_into(const std::string& new_root, const std::string& put_old, const std::string& host_dir,
                const std::string& mountpoint, bool devpts, std::string* err);

// A /dev of the vassal's own in the new root (when it has a /dev): a small
// tmpfs holding null, zero, full, random, urandom and tty bound from the
// host's, pts/ and shm/, and the usual links (ptmx, fd, stdin...); read-only
// once a devpts is on pts/. The rest of the root is nodev.
bool populate_dev(const std::string& root, std::string* err);

// Makes `root` and every mount under it read-only, nosuid and nodev
// (mount_setattr with AT_RECURSIVE; before Linux 5.12 the top mount only).
bool remount_tree_readonly(const std::string& root, std::string* err);

// Mounts a fresh proc on /proc (a new pid namespace without pivot-root, in
// the vassal's own mount namespace), so /proc shows the vassal's processes
// with the vassal's pids.
bool mount_proc(std::string* err);

// no_new_privs (always), then setgroups(0, NULL), setgid, setuid (uid or
// gid < 0: that step skipped); verifies that setuid(0)/setgid(0) now fail and that no
// id is 0 any more. No way back.
bool drop_privileges(long uid, long gid, std::string* err);

}  // namespace vassal
}  // namespace moat
