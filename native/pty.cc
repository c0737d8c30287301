// pty.cc: the forkpty router, the shared pty and the terminal client (pty.h
// says what each does, its limits and its syscalls).
#include "pty.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

extern char** environ;

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace moat {

namespace {

std::string errtext(const std::string& what) { return what + ": " + std::strerror(errno); }

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

int pidfd_open(pid_t pid) { return int(syscall(SYS_pidfd_open, pid, 0)); }

// A byte queue: append at the back, consume from the front.
struct Queue {
  std::string buf;
  size_t off = 0;
  size_t size() const { return buf.size() - off; }
  bool empty() const { return size() == 0; }
  const char* data() const { return buf.data() + off; }
  void append(const char* p, size_t n) { buf.append(p, n); }
  void consume(size_t n) {
    off += n;
    if (off == buf.size()) {
      buf.clear();
      off = 0;
    } else if (off > 65536 && off * 2 > buf.size()) {
      buf.erase(0, off);
      off = 0;
    }
  }
  void clear() { buf.clear(); off = 0; }
};

// Writes as much of q as fd takes now. False on a hard error.
bool flush_queue(int fd, Queue& q, bool socket) {
  while (!q.empty()) {
    ssize_t n = socket ? ::send(fd, q.data(), q.size(), MSG_NOSIGNAL | MSG_DONTWAIT) : ::write(fd, q.data(), q.size());
    if (n > 0) {
      q.consume(size_t(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;
  }
  return true;
}

bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= size_t(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      pollfd pfd{fd, POLLOUT, 0};
      ::poll(&pfd, 1, 1000);
      continue;
    }
    return false;
  }
  return true;
}

bool send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= size_t(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    return false;
  }
  return true;
}

// Binds and listens on a unix socket; chmod/chown happen before listen(), so
// a connection can never reach it with the wrong permissions.
int listen_unix(const PtySocketOptions& o, dev_t* dev, ino_t* ino, std::string* err) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (o.path.empty() || o.path.size() >= sizeof(sa.sun_path)) {
    *err = "socket path '" + o.path + "' is empty or longer than " + std::to_string(sizeof(sa.sun_path) - 1) + " bytes";
    return -1;
  }
  std::memcpy(sa.sun_path, o.path.c_str(), o.path.size() + 1);
  struct stat st{};
  if (::lstat(o.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      *err = o.path + " exists and is not a socket";
      return -1;
    }
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) {
      ::close(probe);
      *err = o.path + ": a server is already listening there";
      return -1;
    }
    if (probe >= 0) ::close(probe);
    ::unlink(o.path.c_str());  // stale
  }
  // Bound under a temporary name and renamed into place once it listens with
  // its final mode and owner: whoever sees the path can connect, and nobody
  // ever saw it with other permissions. (Paths too long for the temporary
  // name are bound in place; connections before listen() are refused.)
  std::string tmp = o.path + ".new";
  bool renamed = tmp.size() < sizeof(sa.sun_path);
  const std::string& bind_path = renamed ? tmp : o.path;
  sockaddr_un ba{};
  ba.sun_family = AF_UNIX;
  std::memcpy(ba.sun_path, bind_path.c_str(), bind_path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = errtext("socket");
    return -1;
  }
  if (renamed) ::unlink(tmp.c_str());  // a leftover of a crash; ours by name
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ba), sizeof(ba)) != 0) {
    *err = errtext("bind " + bind_path);
    ::close(fd);
    return -1;
  }
  bool ok = ::chmod(bind_path.c_str(), o.mode & 07777) == 0;
  if (!ok) *err = errtext("chmod " + bind_path);
  if (ok && (o.uid >= 0 || o.gid >= 0)) {
    ok = ::chown(bind_path.c_str(), o.uid >= 0 ? uid_t(o.uid) : uid_t(-1), o.gid >= 0 ? gid_t(o.gid) : gid_t(-1)) == 0;
    if (!ok) *err = errtext("chown " + bind_path);
  }
  if (ok && ::listen(fd, 64) != 0) {
    ok = false;
    *err = errtext("listen " + bind_path);
  }
  if (ok && renamed && ::rename(tmp.c_str(), o.path.c_str()) != 0) {
    ok = false;
    *err = errtext("rename " + tmp + " to " + o.path);
  }
  if (ok && ::lstat(o.path.c_str(), &st) == 0) {
    *dev = st.st_dev;
    *ino = st.st_ino;
  }
  if (!ok) {
    ::unlink(bind_path.c_str());
    ::close(fd);
    return -1;
  }
  return fd;
}

// Removes the socket file if it is still the one we bound.
void unlink_ours(const std::string& path, dev_t dev, ino_t ino) {
  struct stat st{};
  if (!path.empty() && ::lstat(path.c_str(), &st) == 0 && st.st_dev == dev && st.st_ino == ino) ::unlink(path.c_str());
}

// A new pty pair, both ends close-on-exec, master non-blocking.
bool open_pty(uint16_t rows, uint16_t cols, int* master, int* slave, std::string* err) {
  int m = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  if (m < 0) {
    *err = errtext("posix_openpt");
    return false;
  }
  int unlock = 0;
  if (::ioctl(m, TIOCSPTLCK, &unlock) != 0) {
    *err = errtext("TIOCSPTLCK");
    ::close(m);
    return false;
  }
  int s = ::ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (s < 0) {
    *err = errtext("TIOCGPTPEER");
    ::close(m);
    return false;
  }
  winsize ws{};
  ws.ws_row = rows;
  ws.ws_col = cols;
  ::ioctl(m, TIOCSWINSZ, &ws);
  *master = m;
  *slave = s;
  return true;
}

// Reads "pid (comm) state ppid pgrp session ..." and returns the session, or
// -1 (also for a zombie: it has exited, only its parent can reap it, and an
// embedding pid 1 may not have done so yet).
pid_t session_of(const char* pid_dir) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%s/stat", pid_dir);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[512];
  ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
  ::close(fd);
  if (n <= 0) return -1;
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');  // comm may contain spaces and parentheses
  if (!p) return -1;
  char state;
  long ppid, pgrp, sid;
  if (std::sscanf(p + 1, " %c %ld %ld %ld", &state, &ppid, &pgrp, &sid) != 4) return -1;
  if (state == 'Z') return -1;
  return pid_t(sid);
}

struct Argv {
  std::vector<std::string> strings;
  std::vector<char*> ptrs;
  void finish() {
    ptrs.clear();
    for (auto& s : strings) ptrs.push_back(s.data());
    ptrs.push_back(nullptr);
  }
};

}  // namespace

int pty_signal_session(pid_t sid, int sig) {
  if (sid <= 0) return 0;
  DIR* d = ::opendir("/proc");
  if (!d) return 0;
  int count = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    if (session_of(e->d_name) != sid) continue;
    if (::kill(pid_t(std::atol(e->d_name)), sig) == 0) count++;
  }
  ::closedir(d);
  return count;
}

pid_t pty_spawn(int slave, const PtyCommandOptions& o, std::string* err) {
  // Everything the child needs is built before fork(): after it, only
  // async-signal-safe calls (the parent may have other threads).
  Argv argv, envv;
  std::string exe;
  const std::string& c = o.command;
  if (c.empty()) {
    exe = "/bin/sh";
    argv.strings = {"/bin/sh"};
  } else if (c.find(' ') == std::string::npos && c[0] == '/') {
    exe = c;
    argv.strings = {c};
  } else {
    exe = "/bin/sh";
    argv.strings = {"/bin/sh", "-c", c};
  }
  argv.finish();
  char** envp = environ;
  if (!o.env.empty()) {
    envv.strings = o.env;
    envv.finish();
    envp = envv.ptrs.data();
  }
  std::string fail_msg = "moat: cannot start " + (c.empty() ? std::string("/bin/sh") : c) + "\r\n";
  const char* cwd = o.cwd.empty() ? nullptr : o.cwd.c_str();

  pid_t pid = ::fork();
  if (pid < 0) {
    *err = errtext("fork");
    return -1;
  }
  if (pid == 0) {
    sigset_t all;
    sigemptyset(&all);
    ::sigprocmask(SIG_SETMASK, &all, nullptr);
    struct sigaction dfl{};
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) ::sigaction(s, &dfl, nullptr);  // SIGKILL/SIGSTOP fail harmlessly
    if (::setsid() < 0 || ::ioctl(slave, TIOCSCTTY, 0) != 0) _exit(126);
    if (::dup2(slave, 0) < 0 || ::dup2(slave, 1) < 0 || ::dup2(slave, 2) < 0) _exit(126);
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    if (o.uid >= 0 || o.gid >= 0) {
      // The terminal belongs to whoever uses it (as login does).
      if (::fchown(0, o.uid >= 0 ? uid_t(o.uid) : uid_t(-1), o.gid >= 0 ? gid_t(o.gid) : gid_t(-1)) != 0) {}
    }
    if (o.gid >= 0 && (::setgroups(0, nullptr) != 0 || ::setgid(gid_t(o.gid)) != 0)) {
      static const char m[] = "moat: cannot drop to the session's gid\r\n";
      if (::write(2, m, sizeof(m) - 1) < 0) {}
      _exit(126);
    }
    if (o.uid >= 0 && (::setuid(uid_t(o.uid)) != 0 || (o.uid != 0 && ::setuid(0) == 0))) {
      static const char m[] = "moat: cannot drop to the session's uid\r\n";
      if (::write(2, m, sizeof(m) - 1) < 0) {}
      _exit(126);
    }
    if (cwd && ::chdir(cwd) != 0) {}
    ::execve(exe.c_str(), argv.ptrs.data(), envp);
    if (::write(2, fail_msg.data(), fail_msg.size()) < 0) {}
    _exit(127);
  }
  return pid;
}

// ---------------------------------------------------------------------------
// PtyServer

namespace {
enum Kind : uint64_t { kListen = 0, kClient = 1, kMaster = 2, kPidfd = 3, kTimer = 4 };
uint64_t tag(uint64_t id, Kind k) { return id * 8 + k; }
}  // namespace

struct PtyServer::Session {
  uint64_t id = 0;
  pid_t pid = -1;
  int client = -1, master = -1, pidfd = -1, timer = -1;
  uint32_t client_mask = 0, master_mask = 0;  // registered epoll interest (0 = not registered)
  Queue to_master, to_client;
  winsize ws{};
  // framed parser state
  uint8_t hdr[4] = {};
  size_t hdr_len = 0;
  size_t payload_left = 0;
  // ending
  bool leader_alive = true;
  int hangup_stage = 0;  // 0 live, 1 SIGHUP sent (timer armed), 2 SIGKILL sent (timer armed), 3 done
  int status = -1;
  std::string reason;
  int64_t peer_uid = -1, peer_pid = -1;
};

struct PtyServer::Impl {
  PtyServerOptions o;
  PtyEventSink sink;
  int epfd = -1, listen_fd = -1;
  dev_t sock_dev = 0;
  ino_t sock_ino = 0;
  uint64_t next_id = 1;
  std::map<uint64_t, std::unique_ptr<Session>> sessions;
  std::vector<PtyEvent> events;
  std::atomic<uint64_t> started{0}, ended{0}, refused{0}, active{0}, bytes_in{0}, bytes_out{0}, signals{0},
      resizes{0}, ignored{0};

  void emit(PtyEvent e) { events.push_back(std::move(e)); }
  void error(const std::string& m) {
    PtyEvent e{PtyEvent::Type::Error};
    e.text = m;
    emit(std::move(e));
  }
  void flush_events() {
    if (events.empty()) return;
    std::vector<PtyEvent> batch;
    batch.swap(events);
    if (sink) sink(std::move(batch));
  }

  void set_interest(int fd, uint32_t& have, uint32_t want, uint64_t data) {
    if (fd < 0 || have == want) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = data;
    if (want == 0) {
      ::epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
    } else if (::epoll_ctl(epfd, have == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0) {
      error(errtext("epoll_ctl"));
      return;
    }
    have = want;
  }

  void update(Session& s) {
    uint32_t cw = 0, mw = 0;
    if (s.client >= 0) {
      if (s.to_master.size() < o.queue_bytes && s.master >= 0 && s.hangup_stage == 0) cw |= EPOLLIN;
      if (!s.to_client.empty()) cw |= EPOLLOUT;
    }
    if (s.master >= 0) {
      if (s.to_client.size() < o.queue_bytes) mw |= EPOLLIN;
      if (!s.to_master.empty()) mw |= EPOLLOUT;
    }
    set_interest(s.client, s.client_mask, cw, tag(s.id, kClient));
    set_interest(s.master, s.master_mask, mw, tag(s.id, kMaster));
  }

  void close_client(Session& s) {
    if (s.client < 0) return;
    set_interest(s.client, s.client_mask, 0, 0);
    close_fd(s.client);
    s.to_client.clear();
  }
  void close_master(Session& s) {
    if (s.master < 0) return;
    set_interest(s.master, s.master_mask, 0, 0);
    close_fd(s.master);  // the kernel hangs up the slave side
    s.to_master.clear();
  }

  void arm(Session& s, uint32_t ms) {
    if (s.timer < 0) {
      s.timer = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
      if (s.timer < 0) {
        error(errtext("timerfd_create"));
        return;
      }
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = tag(s.id, kTimer);
      ::epoll_ctl(epfd, EPOLL_CTL_ADD, s.timer, &ev);
    }
    itimerspec its{};
    its.it_value.tv_sec = ms / 1000;
    its.it_value.tv_nsec = long(ms % 1000) * 1000000L + 1;
    ::timerfd_settime(s.timer, 0, &its, nullptr);
  }

  // Starts ending the session: SIGHUP (and SIGCONT, so stopped jobs see it)
  // to every process of its session, SIGKILL after the grace.
  void hangup(Session& s, const std::string& reason) {
    if (s.hangup_stage != 0) return;
    s.reason = reason;
    s.hangup_stage = 1;
    pty_signal_session(s.pid, SIGHUP);
    pty_signal_session(s.pid, SIGCONT);
    arm(s, o.hangup_grace_ms);
  }

  void on_timer(Session& s) {
    uint64_t n;
    if (::read(s.timer, &n, sizeof(n)) < 0) {}
    if (s.hangup_stage == 1) {
      pty_signal_session(s.pid, SIGKILL);
      if (s.leader_alive) ::kill(s.pid, SIGKILL);
      s.hangup_stage = 2;
      arm(s, o.hangup_grace_ms);  // last chance for the pty to drain
    } else if (s.hangup_stage == 2) {
      // Something outside the session still holds the slave: stop waiting.
      pty_signal_session(s.pid, SIGKILL);
      close_master(s);
      if (s.to_client.empty()) close_client(s);
      s.hangup_stage = 3;
    }
  }

  void on_exit(Session& s) {
    siginfo_t si{};
    int st = -1;
    if (::waitid(idtype_t(P_PIDFD), id_t(s.pidfd), &si, WEXITED | WNOHANG) == 0) {
      if (si.si_pid == 0) return;  // not yet
      st = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : (si.si_status & 0x7f);
    }
    // ECHILD: someone else reaped it (a pid-1 reaper); the status is unknown.
    s.status = st;
    s.leader_alive = false;
    ::epoll_ctl(epfd, EPOLL_CTL_DEL, s.pidfd, nullptr);
    close_fd(s.pidfd);
    hangup(s, "process exited");
  }

  void handle_frames(Session& s, const char* p, size_t n) {
    while (n > 0) {
      if (s.payload_left > 0) {
        size_t take = std::min(n, s.payload_left);
        s.to_master.append(p, take);
        bytes_in += take;
        s.payload_left -= take;
        p += take;
        n -= take;
        continue;
      }
      size_t take = std::min(n, size_t(4) - s.hdr_len);
      std::memcpy(s.hdr + s.hdr_len, p, take);
      s.hdr_len += take;
      p += take;
      n -= take;
      if (s.hdr_len < 4) break;
      s.hdr_len = 0;
      uint16_t size = uint16_t(s.hdr[1] | (s.hdr[2] << 8));
      uint8_t mod2 = s.hdr[3];
      if (mod2 == 0) {
        s.payload_left = size;
      } else if (mod2 < 100) {
        signals++;
        pid_t pg = s.master >= 0 ? ::tcgetpgrp(s.master) : -1;
        if (pg > 0) {
          ::kill(-pg, mod2);
        } else if (s.leader_alive) {
          ::kill(s.pid, mod2);
        }
      } else if (mod2 == 100 || mod2 == 101) {
        resizes++;
        (mod2 == 100 ? s.ws.ws_row : s.ws.ws_col) = size;
        if (s.master >= 0) ::ioctl(s.master, TIOCSWINSZ, &s.ws);
      } else {
        ignored++;
      }
    }
  }

  void on_client(Session& s, uint32_t ev) {
    if (ev & EPOLLOUT) {
      if (!flush_queue(s.client, s.to_client, true)) {
        close_client(s);
        hangup(s, "client closed");
        return;
      }
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
      char buf[8192];
      ssize_t n = ::read(s.client, buf, sizeof(buf));
      if (n > 0) {
        if (o.framed) {
          handle_frames(s, buf, size_t(n));
        } else {
          s.to_master.append(buf, size_t(n));
          bytes_in += uint64_t(n);
        }
        if (s.master >= 0 && !flush_queue(s.master, s.to_master, false)) s.to_master.clear();
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        close_client(s);
        close_master(s);
        hangup(s, "client closed");
        return;
      }
    }
    if (s.client >= 0 && s.to_client.empty() && s.master < 0) close_client(s);
  }

  void on_master(Session& s, uint32_t ev) {
    if (ev & EPOLLOUT) {
      if (!flush_queue(s.master, s.to_master, false)) s.to_master.clear();
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
      char buf[8192];
      ssize_t n = ::read(s.master, buf, sizeof(buf));
      if (n > 0) {
        if (s.client >= 0) {
          s.to_client.append(buf, size_t(n));
          bytes_out += uint64_t(n);
          if (!flush_queue(s.client, s.to_client, true)) {
            close_client(s);
            close_master(s);
            hangup(s, "client closed");
            return;
          }
        }
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        // EIO: no process holds the slave any more; all output has been read.
        close_master(s);
        if (s.client >= 0 && s.to_client.empty()) close_client(s);
      }
    }
  }

  void accept_one() {
    int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) error(errtext("accept"));
      return;
    }
    ucred cr{};
    socklen_t crlen = sizeof(cr);
    int64_t puid = -1, ppid = -1;
    if (::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) == 0) {
      puid = cr.uid;
      ppid = cr.pid;
    }
    auto refuse = [&](const std::string& why) {
      ::close(c);
      refused++;
      PtyEvent e{PtyEvent::Type::Refused};
      e.peer_uid = puid;
      e.peer_pid = ppid;
      e.text = why;
      emit(std::move(e));
    };
    if (sessions.size() >= o.max_sessions) return refuse("max_sessions (" + std::to_string(o.max_sessions) + ") reached");
    auto s = std::make_unique<Session>();
    s->id = next_id++;
    s->client = c;
    s->peer_uid = puid;
    s->peer_pid = ppid;
    s->ws.ws_row = o.session.rows;
    s->ws.ws_col = o.session.cols;
    int slave = -1;
    std::string err;
    if (!open_pty(o.session.rows, o.session.cols, &s->master, &slave, &err)) return refuse(err);
    s->pid = pty_spawn(slave, o.session, &err);
    ::close(slave);
    if (s->pid < 0) {
      ::close(s->master);
      return refuse(err);
    }
    s->pidfd = pidfd_open(s->pid);
    if (s->pidfd < 0) {
      err = errtext("pidfd_open");
      ::kill(s->pid, SIGKILL);
      ::waitpid(s->pid, nullptr, 0);
      ::close(s->master);
      return refuse(err);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag(s->id, kPidfd);
    ::epoll_ctl(epfd, EPOLL_CTL_ADD, s->pidfd, &ev);
    update(*s);
    started++;
    active++;
    PtyEvent e{PtyEvent::Type::SessionStart};
    e.session = s->id;
    e.pid = s->pid;
    e.peer_uid = puid;
    e.peer_pid = ppid;
    emit(std::move(e));
    sessions.emplace(s->id, std::move(s));
  }

  // A session is over when its connection and pty are closed, its first
  // process is reaped and the SIGKILL sweep has run.
  void reap_finished() {
    for (auto it = sessions.begin(); it != sessions.end();) {
      Session& s = *it->second;
      if (s.client < 0 && s.master < 0 && s.pidfd < 0 && s.hangup_stage >= 2) {
        if (s.hangup_stage == 2) pty_signal_session(s.pid, SIGKILL);
        PtyEvent e{PtyEvent::Type::SessionEnd};
        e.session = s.id;
        e.pid = s.pid;
        e.status = s.status;
        e.text = s.reason;
        emit(std::move(e));
        close_fd(s.timer);
        ended++;
        active--;
        it = sessions.erase(it);
      } else {
        ++it;
      }
    }
  }

  void handle() {
    epoll_event evs[64];
    for (int round = 0; round < 16; round++) {
      int n = ::epoll_wait(epfd, evs, 64, 0);
      if (n <= 0) break;
      for (int i = 0; i < n; i++) {
        uint64_t d = evs[i].data.u64;
        Kind k = Kind(d % 8);
        if (k == kListen) {
          for (int a = 0; a < 16; a++) {
            size_t before = sessions.size() + refused;
            accept_one();
            if (sessions.size() + refused == before) break;
          }
          continue;
        }
        auto it = sessions.find(d / 8);
        if (it == sessions.end()) continue;
        Session& s = *it->second;
        switch (k) {
          case kClient: if (s.client >= 0) on_client(s, evs[i].events); break;
          case kMaster: if (s.master >= 0) on_master(s, evs[i].events); break;
          case kPidfd: if (s.pidfd >= 0) on_exit(s); break;
          case kTimer: if (s.timer >= 0) on_timer(s); break;
          default: break;
        }
        if (s.client >= 0 && s.master < 0 && s.to_client.empty()) close_client(s);
        update(s);
      }
      if (n < 64) break;
    }
    reap_finished();
    flush_events();
  }

  void close_all() {
    for (auto& [id, s] : sessions) {
      close_client(*s);
      close_master(*s);
      if (s->hangup_stage == 0) hangup(*s, "server stopped");
    }
    // Wait up to the grace for the sessions to go, then kill what is left.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.hangup_grace_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      bool any = false;
      for (auto& [id, s] : sessions) any = any || pty_signal_session(s->pid, 0) > 0;
      if (!any) break;
      ::usleep(20000);
    }
    for (auto& [id, s] : sessions) {
      pty_signal_session(s->pid, SIGKILL);
      if (s->pidfd >= 0) {
        siginfo_t si{};
        if (s->leader_alive) ::kill(s->pid, SIGKILL);
        if (::waitid(idtype_t(P_PIDFD), id_t(s->pidfd), &si, WEXITED) == 0 && s->status == -1)
          s->status = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : (si.si_status & 0x7f);
        close_fd(s->pidfd);
      }
      close_fd(s->timer);
      PtyEvent e{PtyEvent::Type::SessionEnd};
      e.session = s->id;
      e.pid = s->pid;
      e.status = s->status;
      e.text = s->reason;
      emit(std::move(e));
      ended++;
      active--;
    }
    sessions.clear();
    if (listen_fd >= 0) {
      close_fd(listen_fd);
      unlink_ours(o.socket.path, sock_dev, sock_ino);
    }
    close_fd(epfd);
    flush_events();
  }
};

// The first step of both servers' open(): refuse a second open, keep the
// event sink, make the epoll set.
template <class Impl>
bool begin_open(Impl& m, PtyEventSink sink, std::string* err) {
  if (m.epfd >= 0) {
    *err = "already open";
    return false;
  }
  m.sink = std::move(sink);
  m.epfd = ::epoll_create1(EPOLL_CLOEXEC);
  if (m.epfd < 0) {
    *err = errtext("epoll_create1");
    return false;
  }
  return true;
}

PtyServer::PtyServer(PtyServerOptions opts) : impl_(std::make_unique<Impl>()) { impl_->o = std::move(opts); }
PtyServer::~PtyServer() { stop(); }

bool PtyServer::open(PtyEventSink sink, std::string* err) {
  Impl& m = *impl_;
  if (!begin_open(m, std::move(sink), err)) return false;
  m.listen_fd = listen_unix(m.o.socket, &m.sock_dev, &m.sock_ino, err);
  if (m.listen_fd < 0) {
    close_fd(m.epfd);
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag(0, kListen);
  ::epoll_ctl(m.epfd, EPOLL_CTL_ADD, m.listen_fd, &ev);
  epfd_ = m.epfd;
  return true;
}

void PtyServer::handle() {
  if (impl_->epfd >= 0) impl_->handle();
}

void PtyServer::close() {
  if (impl_->epfd >= 0) impl_->close_all();
  epfd_ = -1;
}

namespace {
// The loop a server thread runs: wait on the server's epoll fd and a stop eventfd.
template <class Server>
void serve(Server* srv, int epfd, int stop_fd) {
  sigset_t all;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals belong to the program's main thread
  pollfd p[2] = {{epfd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
  for (;;) {
    int n = ::poll(p, 2, -1);
    if (n < 0 && errno != EINTR) break;
    if (p[1].revents) break;
    if (p[0].revents) srv->handle();
  }
}
// start()/stop() of both servers: open, then serve on a thread of their own
// until an eventfd says stop (the addon's use; the runtime calls handle()).
template <class Server>
bool start_thread(Server* srv, PtyEventSink sink, std::string* err, int& stop_fd, std::thread& thread) {
  if (!srv->open(std::move(sink), err)) return false;
  stop_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd < 0) {
    *err = errtext("eventfd");
    srv->close();
    return false;
  }
  thread = std::thread(serve<Server>, srv, srv->fd(), stop_fd);
  return true;
}

template <class Server>
void stop_thread(Server* srv, int& stop_fd, std::thread& thread) {
  if (thread.joinable()) {
    uint64_t one = 1;
    if (::write(stop_fd, &one, sizeof(one)) < 0) {}
    thread.join();
  }
  close_fd(stop_fd);
  srv->close();
}
}  // namespace

bool PtyServer::start(PtyEventSink sink, std::string* err) {
  return start_thread(this, std::move(sink), err, stop_fd_, thread_);
}

void PtyServer::stop() { stop_thread(this, stop_fd_, thread_); }

PtyServerStats PtyServer::stats() const {
  const Impl& m = *impl_;
  PtyServerStats s;
  s.sessions_started = m.started;
  s.sessions_ended = m.ended;
  s.refused = m.refused;
  s.active = m.active;
  s.bytes_in = m.bytes_in;
  s.bytes_out = m.bytes_out;
  s.signals = m.signals;
  s.resizes = m.resizes;
  s.ignored_frames = m.ignored;
  return s;
}

// ---------------------------------------------------------------------------
// SharedPty

struct SharedPty::Impl {
  SharedPtyOptions o;
  PtyEventSink sink;
  int epfd = -1, listen_fd = -1, master = -1, slave = -1, pidfd = -1;
  pid_t pid = -1;
  dev_t sock_dev = 0;
  ino_t sock_ino = 0;
  struct Viewer {
    int fd = -1;
    uint32_t mask = 0;
    Queue out;
  };
  std::map<uint64_t, Viewer> viewers;
  uint64_t next_id = 1;
  std::string scrollback;
  Queue to_master;
  uint32_t master_mask = 0;
  std::vector<PtyEvent> events;

  void emit(PtyEvent e) { events.push_back(std::move(e)); }

  void set_interest(int fd, uint32_t& have, uint32_t want, uint64_t data) {
    if (fd < 0 || have == want) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = data;
    if (want == 0)
      ::epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
    else
      ::epoll_ctl(epfd, have == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
    have = want;
  }

  void drop_viewer(uint64_t id, const std::string& why) {
    auto it = viewers.find(id);
    if (it == viewers.end()) return;
    set_interest(it->second.fd, it->second.mask, 0, 0);
    ::close(it->second.fd);
    viewers.erase(it);
    PtyEvent e{PtyEvent::Type::SessionEnd};
    e.session = id;
    e.text = why;
    emit(std::move(e));
  }

  void update_viewer(uint64_t id, Viewer& v) {
    set_interest(v.fd, v.mask, EPOLLIN | (v.out.empty() ? 0u : uint32_t(EPOLLOUT)), tag(id, kClient));
  }
  void update_master() {
    set_interest(master, master_mask, EPOLLIN | (to_master.empty() ? 0u : uint32_t(EPOLLOUT)), tag(0, kMaster));
  }

  void on_master(uint32_t ev) {
    if (ev & EPOLLOUT) {
      if (!flush_queue(master, to_master, false)) to_master.clear();
    }
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    char buf[8192];
    ssize_t n = ::read(master, buf, sizeof(buf));
    if (n <= 0) return;  // the server holds the slave: no EIO while it is open
    scrollback.append(buf, size_t(n));
    if (scrollback.size() > o.scrollback_bytes) scrollback.erase(0, scrollback.size() - o.scrollback_bytes);
    std::vector<uint64_t> slow;
    for (auto& [id, v] : viewers) {
      v.out.append(buf, size_t(n));
      if (!flush_queue(v.fd, v.out, true)) {
        slow.push_back(id);
      } else if (v.out.size() > o.queue_bytes) {
        slow.push_back(id);
      } else {
        update_viewer(id, v);
      }
    }
    for (uint64_t id : slow) drop_viewer(id, "too slow or gone");
  }

  void on_viewer(uint64_t id, uint32_t ev) {
    auto it = viewers.find(id);
    if (it == viewers.end()) return;
    Viewer& v = it->second;
    if ((ev & EPOLLOUT) && !flush_queue(v.fd, v.out, true)) return drop_viewer(id, "gone");
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
      char buf[8192];
      ssize_t n = ::read(v.fd, buf, sizeof(buf));
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return drop_viewer(id, "viewer closed");
      if (n > 0 && to_master.size() < o.queue_bytes) {  // beyond that, input is dropped
        to_master.append(buf, size_t(n));
        if (!flush_queue(master, to_master, false)) to_master.clear();
        update_master();
      }
    }
    update_viewer(id, v);
  }

  void accept_one() {
    int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return;
    ucred cr{};
    socklen_t crlen = sizeof(cr);
    PtyEvent e{PtyEvent::Type::SessionStart};
    if (::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) == 0) {
      e.peer_uid = cr.uid;
      e.peer_pid = cr.pid;
    }
    if (viewers.size() >= o.max_viewers) {
      ::close(c);
      e.type = PtyEvent::Type::Refused;
      e.text = "max_viewers reached";
      emit(std::move(e));
      return;
    }
    uint64_t id = next_id++;
    Viewer& v = viewers[id];
    v.fd = c;
    v.out.append(scrollback.data(), scrollback.size());
    flush_queue(c, v.out, true);
    update_viewer(id, v);
    e.session = id;
    emit(std::move(e));
  }

  void on_exit() {
    siginfo_t si{};
    int st = -1;
    if (::waitid(idtype_t(P_PIDFD), id_t(pidfd), &si, WEXITED | WNOHANG) == 0) {
      if (si.si_pid == 0) return;
      st = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : (si.si_status & 0x7f);
    }
    ::epoll_ctl(epfd, EPOLL_CTL_DEL, pidfd, nullptr);
    close_fd(pidfd);
    pty_signal_session(pid, SIGHUP);
    pty_signal_session(pid, SIGCONT);
    PtyEvent e{PtyEvent::Type::SessionEnd};
    e.pid = pid;
    e.status = st;
    e.text = "process exited";
    emit(std::move(e));
  }

  void handle() {
    epoll_event evs[64];
    for (int round = 0; round < 16; round++) {
      int n = ::epoll_wait(epfd, evs, 64, 0);
      if (n <= 0) break;
      for (int i = 0; i < n; i++) {
        uint64_t d = evs[i].data.u64;
        Kind k = Kind(d % 8);
        if (k == kListen) {
          for (int a = 0; a < 16; a++) accept_one();
        } else if (k == kMaster) {
          on_master(evs[i].events);
          update_master();
        } else if (k == kPidfd) {
          if (pidfd >= 0) on_exit();
        } else if (k == kClient) {
          on_viewer(d / 8, evs[i].events);
        }
      }
      if (n < 64) break;
    }
    if (!events.empty() && sink) {
      std::vector<PtyEvent> batch;
      batch.swap(events);
      sink(std::move(batch));
    }
    events.clear();
  }

  void close_all() {
    std::vector<uint64_t> ids;
    for (auto& [id, v] : viewers) ids.push_back(id);
    for (uint64_t id : ids) drop_viewer(id, "server stopped");
    if (pid > 0) {
      pty_signal_session(pid, SIGHUP);
      pty_signal_session(pid, SIGCONT);
      for (int i = 0; i < 50 && pty_signal_session(pid, 0) > 0; i++) ::usleep(20000);
      pty_signal_session(pid, SIGKILL);
      if (pidfd >= 0) {
        siginfo_t si{};
        ::kill(pid, SIGKILL);
        ::waitid(idtype_t(P_PIDFD), id_t(pidfd), &si, WEXITED);
      }
    }
    close_fd(pidfd);
    close_fd(master);
    close_fd(slave);
    if (listen_fd >= 0) {
      close_fd(listen_fd);
      unlink_ours(o.socket.path, sock_dev, sock_ino);
    }
    close_fd(epfd);
    if (!events.empty() && sink) sink(std::move(events));
    events.clear();
  }
};

SharedPty::SharedPty(SharedPtyOptions opts) : impl_(std::make_unique<Impl>()) { impl_->o = std::move(opts); }
SharedPty::~SharedPty() { stop(); }

bool SharedPty::open(PtyEventSink sink, std::string* err) {
  Impl& m = *impl_;
  if (!begin_open(m, std::move(sink), err)) return false;
  if (!open_pty(m.o.command.rows, m.o.command.cols, &m.master, &m.slave, err)) {
    close_fd(m.epfd);
    return false;
  }
  m.listen_fd = listen_unix(m.o.socket, &m.sock_dev, &m.sock_ino, err);
  if (m.listen_fd < 0) {
    close_fd(m.master);
    close_fd(m.slave);
    close_fd(m.epfd);
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag(0, kListen);
  ::epoll_ctl(m.epfd, EPOLL_CTL_ADD, m.listen_fd, &ev);
  m.update_master();
  if (!m.o.command.command.empty()) {
    m.pid = pty_spawn(m.slave, m.o.command, err);
    if (m.pid > 0) m.pidfd = pidfd_open(m.pid);
    if (m.pid < 0 || m.pidfd < 0) {
      if (m.pid > 0) {
        *err = errtext("pidfd_open");
        ::kill(m.pid, SIGKILL);
        ::waitpid(m.pid, nullptr, 0);
        m.pid = -1;
      }
      m.close_all();
      return false;
    }
    ev.data.u64 = tag(0, kPidfd);
    ::epoll_ctl(m.epfd, EPOLL_CTL_ADD, m.pidfd, &ev);
  }
  epfd_ = m.epfd;
  return true;
}

void SharedPty::handle() {
  if (impl_->epfd >= 0) impl_->handle();
}

void SharedPty::close() {
  if (impl_->epfd >= 0) impl_->close_all();
  epfd_ = -1;
}

bool SharedPty::start(PtyEventSink sink, std::string* err) {
  return start_thread(this, std::move(sink), err, stop_fd_, thread_);
}

void SharedPty::stop() { stop_thread(this, stop_fd_, thread_); }

int SharedPty::slave_fd() const { return impl_->slave; }
pid_t SharedPty::command_pid() const { return impl_->pid; }

// ---------------------------------------------------------------------------
// pty_client

namespace {

int g_sig_pipe = -1;
void on_client_signal(int sig) {
  int saved = errno;
  unsigned char b = static_cast<unsigned char>(sig);
  if (::write(g_sig_pipe, &b, 1) < 0) {}
  errno = saved;
}

bool send_winsize(int sock, int tty_fd) {
  winsize ws{};
  if (::ioctl(tty_fd, TIOCGWINSZ, &ws) != 0) return true;  // not a terminal: the server's default stays
  unsigned char pkt[8] = {0, uint8_t(ws.ws_row & 0xff), uint8_t(ws.ws_row >> 8), 100,
                          0, uint8_t(ws.ws_col & 0xff), uint8_t(ws.ws_col >> 8), 101};
  return send_all(sock, reinterpret_cast<char*>(pkt), sizeof(pkt));
}

}  // namespace

int pty_client(const PtyClientOptions& o, std::string* err) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (o.path.empty() || o.path.size() >= sizeof(sa.sun_path)) {
    *err = "socket path '" + o.path + "' is empty or too long";
    return 1;
  }
  std::memcpy(sa.sun_path, o.path.c_str(), o.path.size() + 1);
  int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    *err = errtext("socket");
    return 1;
  }
  if (::connect(sock, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    *err = errtext("connect " + o.path);
    ::close(sock);
    return 1;
  }

  // Signals end the client (after the terminal is restored) or resize it.
  // Handlers write to a pipe, so it works whichever thread receives them.
  int sp[2];
  if (::pipe2(sp, O_CLOEXEC | O_NONBLOCK) != 0) {
    *err = errtext("pipe2");
    ::close(sock);
    return 1;
  }
  g_sig_pipe = sp[1];
  const int sigs[] = {SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  struct sigaction old[5], sa_new{};
  sa_new.sa_handler = on_client_signal;
  sigemptyset(&sa_new.sa_mask);
  sa_new.sa_flags = SA_RESTART;
  struct sigaction ign{};
  ign.sa_handler = SIG_IGN;
  struct sigaction old_pipe;
  ::sigaction(SIGPIPE, &ign, &old_pipe);
  for (int i = 0; i < 5; i++) ::sigaction(sigs[i], &sa_new, &old[i]);
  sigset_t unblock, old_mask;
  sigemptyset(&unblock);
  for (int s : sigs) sigaddset(&unblock, s);
  ::pthread_sigmask(SIG_UNBLOCK, &unblock, &old_mask);

  bool tty = ::isatty(o.in_fd) == 1;
  termios saved{};
  bool restore = tty && ::tcgetattr(o.in_fd, &saved) == 0;
  if (restore) {
    termios raw = saved;
    ::cfmakeraw(&raw);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    ::tcsetattr(o.in_fd, TCSANOW, &raw);
  }
  int winsize_fd = ::isatty(o.in_fd) ? o.in_fd : o.out_fd;

  int rc = 0;
  bool in_open = true;
  if (o.framed && !send_winsize(sock, winsize_fd)) {
    *err = errtext("send");
    rc = 1;
  }
  char buf[8192];
  while (rc == 0) {
    pollfd p[3] = {{sock, POLLIN, 0}, {sp[0], POLLIN, 0}, {in_open ? o.in_fd : -1, POLLIN, 0}};
    int n = ::poll(p, 3, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errtext("poll");
      rc = 1;
      break;
    }
    if (p[1].revents & POLLIN) {
      unsigned char sig;
      bool end = false;
      while (::read(sp[0], &sig, 1) == 1) {
        if (sig == SIGWINCH) {
          if (o.framed) send_winsize(sock, winsize_fd);
        } else {
          rc = 128 + sig;
          end = true;
        }
      }
      if (end) break;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = ::read(sock, buf, sizeof(buf));
      if (r == 0) break;  // the session ended
      if (r < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        if (errno == ECONNRESET) break;
        *err = errtext("read " + o.path);
        rc = 1;
        break;
      }
      if (!write_all(o.out_fd, buf, size_t(r))) {
        *err = errtext("write to the terminal");
        rc = 1;
        break;
      }
    }
    if (in_open && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t r = ::read(o.in_fd, buf, sizeof(buf));
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r <= 0) {
        if (tty) break;  // the terminal went away
        in_open = false; // piped input ended: wait for the session to end
        continue;
      }
      bool ok;
      if (o.framed) {
        char frame[4 + sizeof(buf)];
        frame[0] = 0;
        frame[1] = char(r & 0xff);
        frame[2] = char(size_t(r) >> 8);
        frame[3] = 0;
        std::memcpy(frame + 4, buf, size_t(r));
        ok = send_all(sock, frame, size_t(r) + 4);
      } else {
        ok = send_all(sock, buf, size_t(r));
      }
      if (!ok) break;  // the server closed: its end comes as EOF next
    }
  }

  if (restore) ::tcsetattr(o.in_fd, TCSAFLUSH, &saved);
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  for (int i = 0; i < 5; i++) ::sigaction(sigs[i], &old[i], nullptr);
  ::sigaction(SIGPIPE, &old_pipe, nullptr);
  g_sig_pipe = -1;
  ::close(sp[0]);
  ::close(sp[1]);
  ::close(sock);
  return rc;
}

}  // namespace moat
