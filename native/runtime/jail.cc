// jail.cc: addresses, mounts, pivot-root, privilege drop (see jail.h).
#include "jail.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <utility>

namespace moat {
namespace vassal {

namespace {

std::string errno_text(const std::string& what) {
  return what + ": " + strerror(errno);
}

// Runs one SIOC* request with an AF_INET datagram socket (no packets).
bool inet_ioctl(unsigned long req, void* arg, const std::string& what, std::string* err) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    *err = errno_text("socket for " + what);
    return false;
  }
  bool ok = ioctl(s, req, arg) == 0;
  if (!ok) *err = errno_text(what);
  close(s);
  return ok;
}

void fill_sin(struct sockaddr* sa, uint32_t addr) {
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = addr;
  memcpy(sa, &sin, sizeof sin);
}

std::string ip_text(uint32_t a) {
  char b[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, b, sizeof b);
  return b;
}

}  // namespace

bool set_address(const std::string& dev, uint32_t addr, int bits, std::string* err) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, dev.c_str(), IFNAMSIZ - 1);
  fill_sin(&ifr.ifr_addr, addr);
  if (!inet_ioctl(SIOCSIFADDR, &ifr, "SIOCSIFADDR " + ip_text(addr) + " on " + dev, err)) return false;
  uint32_t mask = bits == 0 ? 0 : htonl(uint32_t(0xffffffffu << (32 - bits)));
  fill_sin(&ifr.ifr_netmask, mask);
  return inet_ioctl(SIOCSIFNETMASK, &ifr, "SIOCSIFNETMASK /" + std::to_string(bits) + " on " + dev, err);
}

bool set_link_up(const std::string& dev, std::string* err) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, dev.c_str(), IFNAMSIZ - 1);
  if (!inet_ioctl(SIOCGIFFLAGS, &ifr, "SIOCGIFFLAGS " + dev, err)) return false;
  if (ifr.ifr_flags & IFF_UP) return true;
  ifr.ifr_flags |= IFF_UP;
  return inet_ioctl(SIOCSIFFLAGS, &ifr, "SIOCSIFFLAGS up " + dev, err);
}

bool add_default_route(const std::string& dev, uint32_t gateway, std::string* err) {
  struct rtentry rt;
  memset(&rt, 0, sizeof rt);
  fill_sin(&rt.rt_dst, 0);
  fill_sin(&rt.rt_genmask, 0);
  fill_sin(&rt.rt_gateway, gateway);
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  char name[IFNAMSIZ] = {};
  strncpy(name, dev.c_str(), IFNAMSIZ - 1);
  rt.rt_dev = name;
  return inet_ioctl(SIOCADDRT, &rt, "SIOCADDRT default via " + ip_text(gateway) + " dev " + dev, err);
}

bool make_mounts_private(std::string* err) {
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    *err = errno_text("making the mounts private (mount / MS_REC|MS_PRIVATE)");
    return false;
  }
  return true;
}

bool bind_dir(const std::string& host_dir, const std::string& target, std::string* err) {
  if (mount(host_dir.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    *err = errno_text("vassal-dir: bind " + host_dir + " on " + target);
    return false;
  }
  // A bind mount takes its flags from a remount only.
  if (mount(nullptr, target.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, nullptr) != 0) {
    *err = errno_text("vassal-dir: remount " + target + " nosuid,nodev");
    return false;
  }
  return true;
}

namespace {
// mount_setattr(2) (Linux 5.12): glibc 2.36 has no wrapper everywhere.
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
struct MountAttr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};
constexpr uint64_t kAttrRdonly = 0x1, kAttrNosuid = 0x2, kAttrNodev = 0x4;
constexpr unsigned kAtRecursive = 0x8000;
}  // namespace

bool remount_tree_readonly(const std::string& root, std::string* err) {
  MountAttr attr{kAttrRdonly | kAttrNosuid | kAttrNodev, 0, 0, 0};
  if (syscall(SYS_mount_setattr, AT_FDCWD, root.c_str(), kAtRecursive, &attr, sizeof attr) == 0) return true;
  if (errno != ENOSYS) {
    *err = errno_text("pivot-root: make " + root + " and its submounts read-only, nosuid, nodev");
    return false;
  }
  // Before 5.12: the top mount only (submounts of the new root keep their flags).
  if (mount(nullptr, root.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0) {
    *err = errno_text("pivot-root: remount " + root + " read-only");
    return false;
  }
  return true;
}

namespace {
bool is_dir(const std::string& p) {
  struct stat st;
  return lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
}  // namespace

bool populate_dev(const std::string& root, std::string* err) {
  const std::string dev = root + "/dev";
  if (!is_dir(dev)) return true;
  if (mount("tmpfs", dev.c_str(), "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k") != 0) {
    *err = errno_text("pivot-root: mount a tmpfs on " + dev);
    return false;
  }
  // The few devices a program expects, bound from the host's /dev (whose
  // mount allows devices): the rest of the root is nodev.
  for (const char* name : {"null", "zero", "full", "random", "urandom", "tty"}) {
    const std::string host = std::string("/dev/") + name, node = dev + "/" + name;
    int fd = open(node.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0) {
      *err = errno_text("pivot-root: create " + node);
      return false;
    }
    close(fd);
    if (mount(host.c_str(), node.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      *err = errno_text("pivot-root: bind " + host + " on " + node);
      return false;
    }
  }
  if (mkdir((dev + "/pts").c_str(), 0755) != 0 || mkdir((dev + "/shm").c_str(), 01777) != 0 ||
      chmod((dev + "/shm").c_str(), 01777) != 0) {
    *err = errno_text("pivot-root: make /dev/pts and /dev/shm in " + dev);
    return false;
  }
  const std::pair<const char*, const char*> links[] = {{"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"},
      {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}};
  for (const auto& l : links) {
    if (symlink(l.second, (dev + "/" + l.first).c_str()) != 0) {
      *err = errno_text("pivot-root: link " + dev + "/" + l.first);
      return false;
    }
  }
  return true;
}

bool mount_proc(std::string* err) {
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    *err = errno_text("mount a fresh proc on /proc");
    return false;
  }
  return true;
}

bool pivot_into(const std::string& new_root_arg, const std::string& put_old, const std::string& host_dir,
                const std::string& mountpoint, bool devpts, std::string* err) {
  char resolved[PATH_MAX];
  if (!realpath(new_root_arg.c_str(), resolved)) {
    *err = errno_text("pivot-root: new root " + new_root_arg);
    return false;
  }
  const std::string root(resolved);
  // put_old as a path relative to the new root.
  std::string rel;
  if (put_old[0] == '/') {
    if (put_old.compare(0, new_root_arg.size() + 1, new_root_arg + "/") == 0) {
      rel = put_old.substr(new_root_arg.size() + 1);
    } else if (put_old.compare(0, root.size() + 1, root + "/") == 0) {
      rel = put_old.substr(root.size() + 1);
    } else {
      *err = "pivot-root: put_old " + put_old + " is not under the new root " + new_root_arg;
      return false;
    }
  } else {
    rel = put_old;
  }
  while (!rel.empty() && rel.back() == '/') rel.pop_back();
  if (rel.empty() || rel == "." || rel.find("..") != std::string::npos) {
    *err = "pivot-root: put_old " + put_old + " must be a directory inside the new root";
    return false;
  }

  if (mount(root.c_str(), root.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    *err = errno_text("pivot-root: bind " + root + " onto itself");
    return false;
  }
  // The root and every mount under it: read-only, nosuid, nodev. Then the
  // vassal dir, the one writable place, on top.
  if (!remount_tree_readonly(root, err)) return false;
  if (!host_dir.empty() && !bind_dir(host_dir, root + mountpoint, err)) return false;
  const std::string proc = root + "/proc", tmp = root + "/tmp";
  if (mount("proc", proc.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    *err = errno_text("pivot-root: mount proc on " + proc);
    return false;
  }
  if (mount("tmpfs", tmp.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m") != 0) {
    *err = errno_text("pivot-root: mount tmpfs on " + tmp);
    return false;
  }
  if (!populate_dev(root, err)) return false;
  if (devpts) {
    // A devpts of the vassal's own: its ptys are not the host's, nor the host's its.
    const std::string pts = root + "/dev/pts";
    if (mount("devpts", pts.c_str(), "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") != 0) {
      *err = errno_text("pivot-root: mount devpts on " + pts + " (a pty server needs /dev in the new root)");
      return false;
    }
  }
  const std::string dev = root + "/dev";
  if (is_dir(dev) && mount(nullptr, dev.c_str(), nullptr, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, nullptr) != 0) {
    *err = errno_text("pivot-root: remount " + dev + " read-only");
    return false;
  }
  if (chdir(root.c_str()) != 0) {
    *err = errno_text("pivot-root: chdir " + root);
    return false;
  }
  if (syscall(SYS_pivot_root, ".", rel.c_str()) != 0) {
    *err = errno_text("pivot-root: pivot_root(" + root + ", " + rel + ")");
    return false;
  }
  // The working directory is the new root; the old one hangs at ./rel.
  if (umount2(rel.c_str(), MNT_DETACH) != 0) {
    *err = errno_text("pivot-root: detach the old root at /" + rel);
    return false;
  }
  if (chdir("/") != 0) {
    *err = errno_text("pivot-root: chdir /");
    return false;
  }
  return true;
}

bool drop_privileges(long uid, long gid, std::string* err) {
  // No set-user-ID program (nor file capability) gives anything back, with a
  // uid to drop to or without (a vassal that keeps root gains nothing either).
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    *err = errno_text("prctl(PR_SET_NO_NEW_PRIVS)");
    return false;
  }
  if (uid < 0 && gid < 0) return true;
  if (setgroups(0, nullptr) != 0) {
    *err = errno_text("setgroups(0, NULL)");
    return false;
  }
  if (gid >= 0 && setgid(gid_t(gid)) != 0) {
    *err = errno_text("setgid(" + std::to_string(gid) + ")");
    return false;
  }
  if (uid >= 0 && setuid(uid_t(uid)) != 0) {
    *err = errno_text("setuid(" + std::to_string(uid) + ")");
    return false;
  }
  if (gid > 0 && (getgid() != gid_t(gid) || getegid() != gid_t(gid) || (uid > 0 && setgid(0) == 0))) {
    *err = "privilege drop: the gid is still 0 or can be set back to 0";
    return false;
  }
  if (uid > 0 && (getuid() != uid_t(uid) || geteuid() != uid_t(uid) || setuid(0) == 0)) {
    *err = "privilege drop: the uid can be set back to 0";
    return false;
  }
  return true;
}

}  // namespace vassal
}  // namespace moat
