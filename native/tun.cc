// tun.cc: tun devices and network namespaces (see tun.h).
#include "tun.h"

#include "gso.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/bpf.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
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

// One fd of the device: open + TUNSETIFF with flags. -1 with errno kept.
static int attach_queue(const std::string& name, short flags) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = flags;
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    const int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

int tun_open(const std::string& name, bool vnet, uint32_t gso_max, std::string* err) {
  std::vector<int> fds;
  std::string note;
  if (!tun_open_queues(name, vnet, gso_max, 1, &fds, &note, err)) return -1;
  return fds[0];
}

bool tun_open_queues(const std::string& name, bool vnet, uint32_t gso_max, unsigned queues,
                     std::vector<int>* fds, std::string* note, std::string* err) {
  fds->clear();
  if (name.empty() || name.size() >= IFNAMSIZ) {
    *err = "tun device name must be 1-15 characters";
    return false;
  }
  short flags = short(IFF_TUN | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0));
  int fd = -1;
  if (queues > 1) {
    fd = attach_queue(name, short(flags | IFF_MULTI_QUEUE));
    // A device made before (ip tuntap add, or uWSGI) without multi_queue:
    // the kernel refuses the flag, and the device works with one queue.
    if (fd < 0 && errno == EINVAL) {
      *note = "tun device " + name + " exists without multi_queue: reading it through one queue";
      queues = 1;
    } else {
      flags = short(flags | IFF_MULTI_QUEUE);
    }
  }
  if (fd < 0) fd = attach_queue(name, flags);
  // One queue asked of a device made multi_queue before: attach one.
  if (fd < 0 && errno == EINVAL && queues == 1 && !(flags & IFF_MULTI_QUEUE)) {
    fd = attach_queue(name, short(flags | IFF_MULTI_QUEUE));
    if (fd >= 0) flags = short(flags | IFF_MULTI_QUEUE);
    else errno = EINVAL;  // the first refusal is the one to report
  }
  if (fd < 0) {
    *err = errno_text(("TUNSETIFF " + name).c_str());
    return false;
  }
  fds->push_back(fd);
  if (vnet) {
    int hdr = 10;  // sizeof(virtio_net_hdr)
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 || tun_set_offload(fd, 0, err) < 0) {
      if (err->empty()) *err = errno_text("TUNSETVNETHDRSZ");
      close(fd);
      fds->clear();
      return false;
    }
    if (gso_max) {
      set_link_u32(name.c_str(), IFLA_GSO_MAX_SIZE, gso_max);
      // Segments per super-packet within what a vnet frame may carry (offload.cc).
      set_link_u32(name.c_str(), IFLA_GSO_MAX_SEGS, uint32_t(kMaxSegments));
    }
  }
  // The other queues of a multi-queue device share its header size,
  // offloads and link: attaching them is all they need.
  while (fds->size() < queues) {
    const int q = attach_queue(name, flags);
    if (q < 0) {
      *note = errno_text(("tun device " + name + ": queue " + std::to_string(fds->size() + 1) + " of " +
                          std::to_string(queues)).c_str()) + "; reading it through " + std::to_string(fds->size());
      break;
    }
    fds->push_back(q);
  }
  if (!link_up(name.c_str(), err)) {
    for (int q : *fds) close(q);
    fds->clear();
    return false;
  }
  return true;
}

bool tun_steer_by_destination(int fd, std::string* err) {
  // r6 = the skb; r0 = the 32-bit word at offset 16 of the packet (an IPv4
  // destination, in host order; a short packet ends the program with 0);
  // return r0. The kernel takes its low 16 bits modulo the queues.
  struct bpf_insn prog[3];
  memset(prog, 0, sizeof prog);
  prog[0].code = BPF_ALU64 | BPF_MOV | BPF_X;
  prog[0].dst_reg = 6;
  prog[0].src_reg = 1;
  prog[1].code = BPF_LD | BPF_W | BPF_ABS;
  prog[1].imm = 16;
  prog[2].code = BPF_JMP | BPF_EXIT;
  static const char license[] = "GPL";
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
  attr.insn_cnt = 3;
  attr.insns = uint64_t(reinterpret_cast<uintptr_t>(prog));
  attr.license = uint64_t(reinterpret_cast<uintptr_t>(license));
  const int pfd = int(syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof attr));
  if (pfd < 0) {
    *err = errno_text("loading the steering program (bpf)");
    return false;
  }
  // The device keeps its own reference to the program.
  const bool ok = ioctl(fd, TUNSETSTEERINGEBPF, &pfd) == 0;
  if (!ok) *err = errno_text("TUNSETSTEERINGEBPF");
  close(pfd);
  return ok;
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
