// tun.cc: tun devices and network namespaces (see tun.h).
#include "tun.h"

#include "gso.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

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

// RTM_NEWLINK with one u32 attribute, e.g. IFLA_GSO_MAX_SIZE (what `ip link
// set DEV gso_max_size N` sends). Returns false if the kernel refused or did
// not answer.
static bool set_link_u32(const char* name, unsigned short attr, uint32_t size) {
  int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (s < 0) return false;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) {
    close(s);
    return false;
  }
  const int index = ifr.ifr_ifindex;
  struct {
    nlmsghdr nh;
    ifinfomsg ifi;
    rtattr ra;
    uint32_t value;
  } req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = sizeof req;
  req.nh.nlmsg_type = RTM_NEWLINK;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.nh.nlmsg_seq = 1;
  req.ifi.ifi_family = AF_UNSPEC;
  req.ifi.ifi_index = index;
  req.ra.rta_type = attr;
  req.ra.rta_len = RTA_LENGTH(sizeof(uint32_t));
  req.value = size;
  sockaddr_nl to;
  memset(&to, 0, sizeof to);
  to.nl_family = AF_NETLINK;
  bool ok = false;
  if (sendto(s, &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) == ssize_t(sizeof req)) {
    char buf[512];
    const ssize_t n = recv(s, buf, sizeof buf, 0);
    const nlmsghdr* nh = reinterpret_cast<const nlmsghdr*>(buf);
    if (n >= ssize_t(sizeof(nlmsghdr) + sizeof(nlmsgerr)) && nh->nlmsg_type == NLMSG_ERROR)
      ok = reinterpret_cast<const nlmsgerr*>(NLMSG_DATA(nh))->error == 0;
  }
  close(s);
  return ok;
}

int tun_set_offload(int fd, unsigned flags, std::string* err) {
  if (ioctl(fd, TUNSETOFFLOAD, flags) == 0) return int(flags);
  const unsigned uso = 0x20 | 0x40;  // TUN_F_USO4 | TUN_F_USO6 (Linux 6.2)
  if (errno == EINVAL && (flags & uso) && ioctl(fd, TUNSETOFFLOAD, flags & ~uso) == 0)
    return int(flags & ~uso);
  *err = errno_text("TUNSETOFFLOAD");
  return -1;
}

int tun_open(const std::string& name, std::string* err) { return tun_open(name, false, 0, err); }

int tun_open(const std::string& name, bool vnet, uint32_t gso_max, std::string* err) {
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
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    *err = errno_text(("TUNSETIFF " + name).c_str());
    close(fd);
    return -1;
  }
  if (vnet) {
    int hdr = 10;  // sizeof(virtio_net_hdr)
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 || tun_set_offload(fd, 0, err) < 0) {
      if (err->empty()) *err = errno_text("TUNSETVNETHDRSZ");
      close(fd);
      return -1;
    }
    if (gso_max) {
      set_link_u32(ifr.ifr_name, IFLA_GSO_MAX_SIZE, gso_max);
      // Segments per super-packet within what a vnet frame may carry (offload.cc).
      set_link_u32(ifr.ifr_name, IFLA_GSO_MAX_SEGS, uint32_t(kMaxSegments));
    }
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
