// pty_process.cc: a process on a pseudo-terminal and the end of its session
// (pty_process.h says what it does, its limits and its syscalls).
#include "pty_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "pty_common.h"

extern char** environ;

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace moat {

namespace {

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

int wait_status(const siginfo_t& si) {
  return si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : (si.si_status & 0x7f);
}

}  // namespace

bool open_pty(uint16_t rows, uint16_t cols, int* master, int* slave, std::string* err) {
  int m = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  if (m < 0) {
    *err = pty_errtext("posix_openpt");
    return false;
  }
  int unlock = 0;
  if (::ioctl(m, TIOCSPTLCK, &unlock) != 0) {
    *err = pty_errtext("TIOCSPTLCK");
    ::close(m);
    return false;
  }
  int s = ::ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (s < 0) {
    *err = pty_errtext("TIOCGPTPEER");
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
    *err = pty_errtext("fork");
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

PtyLeader::~PtyLeader() { pty_close(pidfd_); }

bool PtyLeader::spawn(int slave, const PtyCommandOptions& o, std::string* err) {
  pid_ = pty_spawn(slave, o, err);
  if (pid_ < 0) return false;
  pidfd_ = int(::syscall(SYS_pidfd_open, pid_, 0));
  if (pidfd_ < 0) {
    *err = pty_errtext("pidfd_open");
    ::kill(pid_, SIGKILL);  // our child, not reaped yet: the pid is still ours
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return false;
  }
  return true;
}

bool PtyLeader::reap() {
  if (pidfd_ < 0) return true;
  siginfo_t si{};
  if (::waitid(idtype_t(P_PIDFD), id_t(pidfd_), &si, WEXITED | WNOHANG) == 0) {
    if (si.si_pid == 0) return false;  // not yet
    status_ = wait_status(si);
  }
  // ECHILD: someone else reaped it (a pid-1 reaper); the status stays unknown.
  pty_close(pidfd_);
  return true;
}

void PtyLeader::wait() {
  if (pidfd_ < 0) return;
  siginfo_t si{};
  if (::waitid(idtype_t(P_PIDFD), id_t(pidfd_), &si, WEXITED) == 0) status_ = wait_status(si);
  pty_close(pidfd_);
}

void PtyLeader::signal(int sig) {
  if (pidfd_ >= 0) ::syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0);
}

void PtyLeader::hangup() {
  pty_signal_session(pid_, SIGHUP);
  pty_signal_session(pid_, SIGCONT);
}

void PtyLeader::kill() {
  pty_signal_session(pid_, SIGKILL);
  signal(SIGKILL);
}

bool PtyLeader::session_left() const { return pty_signal_session(pid_, 0) > 0; }

void pty_end_sessions(const std::vector<PtyLeader*>& leaders, uint32_t grace_ms) {
  for (PtyLeader* l : leaders) l->hangup();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    bool any = false;
    for (PtyLeader* l : leaders) any = any || l->session_left();
    if (!any) break;
    ::usleep(20000);
  }
  for (PtyLeader* l : leaders) {
    l->kill();
    l->wait();
  }
}

}  // namespace moat
