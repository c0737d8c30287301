// channel.cc: lines, the set-up config and events (see channel.h).
#include "channel.h"

#include "../option_bounds.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if.h>
#include <sched.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

namespace moat {
namespace vassal {

LineReader::Result LineReader::next(std::string* line) {
  for (;;) {
    size_t nl = buf_.find('\n');
    if (discarding_) {
      if (nl == std::string::npos) {
        buf_.clear();
        return Result::NeedMore;
      }
      buf_.erase(0, nl + 1);
      discarding_ = false;
      continue;
    }
    if (nl == std::string::npos) {
      if (buf_.size() > kMaxLine) {
        buf_.clear();
        discarding_ = true;
        return Result::TooLong;
      }
      if (!eof_) return Result::NeedMore;
      buf_.clear();  // a last line without its newline is not a line
      return Result::Eof;
    }
    if (nl > kMaxLine) {
      buf_.erase(0, nl + 1);
      return Result::TooLong;
    }
    line->assign(buf_, 0, nl);
    buf_.erase(0, nl + 1);
    if (buf_.empty()) buf_.shrink_to_fit();
    return Result::Line;
  }
}

LineReader::Result LineReader::fill() {
  if (eof_) return Result::Eof;
  char tmp[4096];
  ssize_t n = read(fd_, tmp, sizeof tmp);
  if (n == 0) {
    eof_ = true;
    return Result::Eof;
  }
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) return Result::NeedMore;
    return Result::Error;
  }
  // Bounded: next() drains or discards once kMaxLine is passed, so the buffer
  // never holds more than kMaxLine + sizeof tmp bytes without a newline.
  buf_.append(tmp, size_t(n));
  return Result::NeedMore;
}

void split_line(const std::string& line, std::string* keyword, std::string* value) {
  size_t sp = line.find(' ');
  if (sp == std::string::npos) {
    *keyword = line;
    value->clear();
  } else {
    *keyword = line.substr(0, sp);
    *value = line.substr(sp + 1);
  }
}

namespace {

bool parse_number(const std::string& s, long max, long* out) {
  if (s.empty() || s.size() > 10) return false;
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v > max) return false;
  *out = v;
  return true;
}

bool parse_ipv4(const std::string& s, uint32_t* out) {
  struct in_addr a;
  if (s.size() > 15 || inet_pton(AF_INET, s.c_str(), &a) != 1) return false;
  *out = a.s_addr;
  return true;
}

// "FIRST REST": FIRST up to the first space, REST non-empty.
bool split_pair(const std::string& v, std::string* a, std::string* b) {
  size_t sp = v.find(' ');
  if (sp == std::string::npos || sp == 0) return false;
  *a = v.substr(0, sp);
  size_t rest = v.find_first_not_of(' ', sp);
  if (rest == std::string::npos) return false;
  *b = v.substr(rest);
  return true;
}

// "PATH [MODE UID GID]": PATH absolute and short enough for sun_path, MODE
// octal (3-4 digits), UID and GID numbers or -1.
bool parse_pty_socket(const std::string& v, PtySocketConfig* out, std::string* why) {
  std::vector<std::string> f;
  size_t pos = 0;
  while (pos < v.size() && f.size() < 5) {
    size_t sp = v.find(' ', pos);
    if (sp == std::string::npos) sp = v.size();
    if (sp > pos) f.push_back(v.substr(pos, sp - pos));
    pos = sp + 1;
  }
  if (f.size() != 1 && f.size() != 4) {
    *why = "expected 'PATH [MODE UID GID]'";
    return false;
  }
  const std::string& p = f[0];
  if (p[0] != '/' || p.size() > 107) {
    *why = "the path must be absolute and at most 107 bytes";
    return false;
  }
  for (char c : p) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      *why = "the path has a control character";
      return false;
    }
  }
  out->path = p;
  if (f.size() == 1) return true;
  const std::string& m = f[1];
  if (m.size() < 3 || m.size() > 4 || m.find_first_not_of("01234567") != std::string::npos) {
    *why = "MODE is 3-4 octal digits";
    return false;
  }
  out->mode = uint32_t(std::stoul(m, nullptr, 8));
  for (int i = 0; i < 2; i++) {
    long n = -1;
    if (f[2 + i] != "-1" && !parse_number(f[2 + i], 4294967294L, &n)) {
      *why = "UID and GID are numbers (or -1: keep)";
      return false;
    }
    (i == 0 ? out->uid : out->gid) = n;
  }
  return true;
}

}  // namespace

// Bounds: the hard limits native code enforces (native/option_bounds.h);
// the option table's rows must lie inside them (test/unit/option-table).
const DeviceLine kDeviceLines[] = {
    {"device-busy-poll", kBusyPollUsBounds.lo, kBusyPollUsBounds.hi, &Config::device_busy_poll_us},
    {"device-sndbuf", kSndbufBounds.lo, kSndbufBounds.hi, &Config::device_sndbuf},
    {"device-max-frame", kMaxFrameBounds.lo, kMaxFrameBounds.hi, &Config::device_max_frame},
    {"device-queue-bytes", kQueueBytesBounds.lo, kQueueBytesBounds.hi, &Config::device_queue_bytes},
    {"device-reconnect-min", kReconnectMsBounds.lo, kReconnectMsBounds.hi, &Config::device_reconnect_min_ms},
    {"device-reconnect-max", kReconnectMsBounds.lo, kReconnectMsBounds.hi, &Config::device_reconnect_max_ms},
};
const size_t kDeviceLineCount = sizeof(kDeviceLines) / sizeof(kDeviceLines[0]);

const DeviceSwitch kDeviceSwitches[] = {
    {"device-offload", &Config::device_offload},
    {"device-handoff", &Config::device_handoff},
};
const size_t kDeviceSwitchCount = sizeof(kDeviceSwitches) / sizeof(kDeviceSwitches[0]);

bool Config::once(const std::string& keyword, std::string* err) {
  if (std::find(seen_.begin(), seen_.end(), keyword) != seen_.end()) {
    *err = "'" + keyword + "' given twice";
    return false;
  }
  seen_.push_back(keyword);
  return true;
}

bool Config::apply(const std::string& k, const std::string& v, std::string* err) {
  auto bad = [&](const char* what) {
    *err = "bad '" + k + "' value '" + v.substr(0, 200) + "': " + what;
    return false;
  };
  if (k == "exec-post-jail" || k == "exec-as-root" || k == "exec-as-user" || k == "attach-daemon") {
    if (v.empty()) return bad("empty command");
    (k == "exec-post-jail" ? post_jail : k == "exec-as-root" ? as_root : k == "exec-as-user" ? as_user : daemons)
        .push_back(v);
    return true;
  }
  if (k == "cgroup") {
    static const std::string kRoot = "/sys/fs/cgroup/";
    if (v.compare(0, kRoot.size(), kRoot) != 0 || v.size() > 4000 || v.find("/..") != std::string::npos ||
        v.find("/./") != std::string::npos)
      return bad("expected a cgroup directory under /sys/fs/cgroup");
    if (cgroups.size() >= 8) return bad("at most 8 cgroups (one per hierarchy)");
    cgroups.push_back(v);
    return true;
  }
  if (k == "env") {
    size_t eq = v.find('=');
    if (eq == std::string::npos || eq == 0) return bad("expected KEY=VALUE");
    env.push_back(v);
    return true;
  }
  if (k == "name") {
    if (!once(k, err)) return false;
    if (v.empty() || v.size() > 255) return bad("1-255 characters");
    name = v;
    return true;
  }
  if (k == "clone") {
    if (!once(k, err)) return false;
    size_t pos = 0;
    while (pos <= v.size() && !v.empty()) {
      size_t comma = v.find(',', pos);
      std::string f = v.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      if (f == "fs" || f == "mount") clone_flags |= CLONE_NEWNS;
      else if (f == "ipc") clone_flags |= CLONE_NEWIPC;
      else if (f == "uts") clone_flags |= CLONE_NEWUTS;
      else if (f == "net") clone_flags |= CLONE_NEWNET;
      else if (f == "pid") clone_flags |= CLONE_NEWPID;
      else return bad("namespaces are fs (or mount), ipc, uts, net, pid");
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    return true;
  }
  if (k == "device") {
    if (!once(k, err)) return false;
    if (!split_pair(v, &device_name, &device_socket)) return bad("expected 'DEV SOCKET'");
    if (device_name.size() >= IFNAMSIZ || device_name.find('/') != std::string::npos)
      return bad("the device name is 1-15 characters without '/'");
    has_device = true;
    return true;
  }
  for (size_t i = 0; i < kDeviceSwitchCount; i++) {
    if (k != kDeviceSwitches[i].keyword) continue;
    if (!once(k, err)) return false;
    if (v != "on" && v != "off") return bad("expected 'on' or 'off'");
    this->*kDeviceSwitches[i].field = v == "on";
    return true;
  }
  for (size_t i = 0; i < kDeviceLineCount; i++) {
    const DeviceLine& d = kDeviceLines[i];
    if (k != d.keyword) continue;
    if (!once(k, err)) return false;
    long n;
    if (!parse_number(v, long(d.hi), &n) || n < long(d.lo))
      return bad(("expected a number " + std::to_string(d.lo) + ".." + std::to_string(d.hi)).c_str());
    this->*d.field = uint32_t(n);
    return true;
  }
  if (k == "device-address") {
    if (!once(k, err)) return false;
    size_t slash = v.find('/');
    long bits = 32;
    if (!parse_ipv4(v.substr(0, slash), &address) ||
        (slash != std::string::npos && !parse_number(v.substr(slash + 1), 32, &bits)))
      return bad("expected A.B.C.D/BITS");
    prefix_bits = int(bits);
    has_address = true;
    return true;
  }
  if (k == "device-route") {
    if (!once(k, err)) return false;
    if (!parse_ipv4(v, &gateway)) return bad("expected A.B.C.D");
    has_route = true;
    return true;
  }
  if (k == "vassal-dir") {
    if (!once(k, err)) return false;
    if (!split_pair(v, &vassal_host_dir, &vassal_mountpoint) || vassal_host_dir[0] != '/' ||
        vassal_mountpoint[0] != '/')
      return bad("expected 'HOSTDIR MOUNTPOINT', both absolute");
    return true;
  }
  if (k == "pivot-root") {
    if (!once(k, err)) return false;
    if (!split_pair(v, &new_root, &put_old) || new_root[0] != '/') return bad("expected 'NEW_ROOT PUT_OLD'");
    return true;
  }
  if (k == "uid" || k == "gid") {
    if (!once(k, err)) return false;
    long n;
    if (!parse_number(v, 4294967294L, &n)) return bad("expected a number");
    (k == "uid" ? uid : gid) = n;
    return true;
  }
  if (k == "pty-router") {
    PtyRouterConfig r;
    std::string mode, rest, why;
    if (!split_pair(v, &mode, &rest) || (mode != "raw" && mode != "framed"))
      return bad("expected 'raw|framed PATH [MODE UID GID]'");
    r.framed = mode == "framed";
    if (!parse_pty_socket(rest, &r.socket, &why)) return bad(why.c_str());
    for (const PtyRouterConfig& o : pty_routers) {
      if (o.framed == r.framed) return bad("one raw and one framed router at most");
      if (o.socket.path == r.socket.path) return bad("both routers on the same path");
    }
    pty_routers.push_back(r);
    return true;
  }
  if (k == "pty-socket") {
    if (!once(k, err)) return false;
    std::string why;
    if (!parse_pty_socket(v, &pty_socket, &why)) return bad(why.c_str());
    has_pty_socket = true;
    return true;
  }
  if (k == "pty-command" || k == "pty-daemon") {
    if (!once(k, err)) return false;
    if (v.empty()) return bad("empty command");
    (k == "pty-command" ? pty_command : pty_daemon) = v;
    return true;
  }
  if (k == "pty-rows" || k == "pty-cols" || k == "pty-grace" || k == "pty-max-sessions") {
    if (!once(k, err)) return false;
    long n;
    long max = k == "pty-grace" ? 600000 : 65535;
    if (!parse_number(v, max, &n) || n < 1) return bad(("expected a number 1.." + std::to_string(max)).c_str());
    (k == "pty-rows" ? pty_rows : k == "pty-cols" ? pty_cols : k == "pty-grace" ? pty_grace_ms : pty_max_sessions) = n;
    return true;
  }
  if (k == "pty-user") {
    if (!once(k, err)) return false;
    std::string a, b;
    if (!split_pair(v, &a, &b) || !parse_number(a, 4294967294L, &pty_user_uid) ||
        !parse_number(b, 4294967294L, &pty_user_gid))
      return bad("expected 'UID GID'");
    return true;
  }
  *err = "unknown keyword '" + k.substr(0, 64) + "'";
  return false;
}

bool Config::check(std::string* err) const {
  if (!new_root.empty() && !(clone_flags & CLONE_NEWNS)) {
    *err = "pivot-root needs the fs namespace (clone fs): it would change the host's mounts";
    return false;
  }
  if (!vassal_host_dir.empty() && !(clone_flags & CLONE_NEWNS)) {
    *err = "vassal-dir needs the fs namespace (clone fs)";
    return false;
  }
  bool any_device_line = std::find_if(seen_.begin(), seen_.end(), [](const std::string& k) {
                           return k.rfind("device-", 0) == 0 && k != "device-address" && k != "device-route";
                         }) != seen_.end();
  if (any_device_line && !has_device) {
    *err = "device options (device-offload, device-sndbuf...) need a device";
    return false;
  }
  if (has_device) {
    // No defaults here: a missing line is the sender's bug, not a choice.
    for (size_t i = 0; i < kDeviceSwitchCount; i++) {
      if (std::find(seen_.begin(), seen_.end(), kDeviceSwitches[i].keyword) == seen_.end()) {
        *err = std::string("device without ") + kDeviceSwitches[i].keyword + " (every device option must be sent)";
        return false;
      }
    }
    for (size_t i = 0; i < kDeviceLineCount; i++) {
      if (std::find(seen_.begin(), seen_.end(), kDeviceLines[i].keyword) == seen_.end()) {
        *err = std::string("device without ") + kDeviceLines[i].keyword + " (every device option must be sent)";
        return false;
      }
    }
    if (device_queue_bytes < device_max_frame + 4) {
      *err = "device-queue-bytes is below device-max-frame + 4 (one whole frame)";
      return false;
    }
    if (device_reconnect_max_ms < device_reconnect_min_ms) {
      *err = "device-reconnect-max is below device-reconnect-min";
      return false;
    }
  }
  if ((has_address || has_route) && !has_device) {
    *err = "device-address and device-route need a device";
    return false;
  }
  bool pty = !pty_routers.empty() || has_pty_socket;
  if (pty && (clone_flags & CLONE_NEWPID) && !(clone_flags & CLONE_NEWNS)) {
    *err = "a pty server in a pid namespace needs the fs namespace too (a /proc of the vassal's own)";
    return false;
  }
  if (has_pty_socket != !pty_daemon.empty()) {
    *err = "pty-socket and pty-daemon go together";
    return false;
  }
  if (pty_user_uid >= 0 && uid >= 0 && (pty_user_uid != uid || pty_user_gid != gid)) {
    *err = "pty-user differs from uid/gid: the runtime runs as uid/gid once set up and cannot start sessions as another user";
    return false;
  }
  if (uid >= 0 && gid < 0) {
    *err = "uid without gid would leave the vassal in group 0: give gid too";
    return false;
  }
  return true;
}

namespace {
std::mutex emit_mutex;
}

void emit(const char* keyword, const std::string& value) {
  std::string line(keyword);
  if (!value.empty()) {
    line += ' ';
    line.append(value, 0, kMaxLine - line.size() - 1);
  }
  std::replace(line.begin(), line.end(), '\n', ' ');
  line += '\n';
  std::lock_guard<std::mutex> lock(emit_mutex);
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = write(kChannelFd, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += size_t(n);
  }
}

std::string status_text(int st) {
  if (WIFSIGNALED(st)) return "signal " + std::to_string(WTERMSIG(st));
  return std::to_string(WEXITSTATUS(st));
}

}  // namespace vassal
}  // namespace moat
