// tun.cc: tun devices and network namespaces (see tun.h).
#include "tun.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace moat {

static std::string errno_text(const char* what) {
  return std::string(what) + ": " + strerror(errno);
}

static bool link_up(const char* name, std::string* err) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    *err = errno_text("socket");
    return false;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  bool ok = ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
  if (ok && !(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags |= IFF_UP;
    ok = ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  }
  if (!ok) *err = errno_text("bringing the link up");
  close(s);
  return ok;
}

int tun_open(const std::string& name, std::string* err) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    *err = "tun device name must be 1-15 characters";
    return -1;
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *err = errno_text("open /dev/net/tun");
    return -1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    *err = errno_text(("TUNSETIFF " + name).c_str());
    close(fd);
    return -1;
  }
  if (!link_up(ifr.ifr_name, err)) {
    close(fd);
    return -1;
  }
  return fd;
}

std::vector<uint32_t> interface_addresses(const std::string& name) {
  std::vector<uint32_t> out;
  struct ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (struct ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
    if (name != a->ifa_name) continue;
    out.push_back(ntohl(reinterpret_cast<struct sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr));
  }
  freeifaddrs(list);
  return out;
}

bool enter_netns(const std::string& path, std::string* err) {
  if (path.empty()) return true;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno_text(("open " + path).c_str());
    return false;
  }
  bool ok = setns(fd, CLONE_NEWNET) == 0;
  if (!ok) *err = errno_text(("setns " + path).c_str());
  close(fd);
  return ok;
}

}  // namespace moat
