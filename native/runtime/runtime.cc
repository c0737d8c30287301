// runtime.cc: the vassal's pid 1 (see runtime.h).
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "../device.h"
#include "../pty_router.h"
#include "../pty_shared.h"
#include "jail.h"

namespace moat {
namespace vassal {

namespace {

constexpr int64_t kStopTimeoutMs = 5000;     // SIGTERM -> SIGKILL
constexpr int64_t kKillGraceMs = 1000;       // after SIGKILL, give up waiting
constexpr int64_t kConnectWaitMs = 2000;     // first router connection before pivot-root
constexpr uint32_t kDaemonBackoffMinMs = 1000;
constexpr uint32_t kDaemonBackoffMaxMs = 30000;
constexpr int64_t kDaemonStableMs = 10000;   // a daemon up this long restarts fast again
constexpr size_t kMaxJobs = 256;
constexpr size_t kMaxJobId = 64;

int64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string errno_text(const std::string& what) {
  return what + ": " + strerror(errno);
}

bool valid_job_id(const std::string& id) {
  if (id.empty() || id.size() > kMaxJobId) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

class Runtime {
 public:
  Runtime(Config& cfg, LineReader& reader) : cfg_(cfg), reader_(reader) {}
  int run();

 private:
  struct Daemon {
    std::string cmd;
    pid_t pid = 0;
    int64_t started_ms = 0;
    int64_t restart_at_ms = -1;   // >= 0: a restart is due then
    uint32_t backoff_ms = kDaemonBackoffMinMs;
    bool on_pty = false;          // pty-daemon: stdio on the shared pty's slave
  };
  struct Job {
    std::string id;
    pid_t pid;
    int64_t started_ms;
  };

  Config& cfg_;
  LineReader& reader_;
  std::vector<std::string> env_;
  std::vector<char*> envp_;
  int sigfd_ = -1;
  int connect_efd_ = -1;
  std::unique_ptr<Device> device_;
  std::atomic<bool> first_connect_seen_{false};
  bool pid1_ = false;
  std::vector<Daemon> daemons_;
  std::vector<Job> jobs_;
  bool stopping_ = false;
  bool killed_ = false;
  int64_t kill_at_ms_ = 0;
  bool children_gone_ = false;
  std::vector<pid_t> stop_groups_;  // no pid namespace: the process groups 'stop' signalled
  bool setup_aborted_ = false;      // stop asked for during set-up
  std::vector<std::unique_ptr<PtyServer>> pty_routers_;
  std::unique_ptr<SharedPty> shared_pty_;

  void log(const char* what, const std::string& msg) {
    fprintf(stderr, "moat-vassal %s: %s%s\n", cfg_.name.c_str(), what, msg.c_str());
  }
  int fail(const std::string& msg, int code = 1) {
    emit("error", msg);
    log("error: ", msg);
    finish();
    return code;
  }
  void finish() {
    close_ptys();
    if (device_) device_->stop();
  }

  bool setup(std::string* err);
  bool start_device(std::string* err);
  bool run_hooks(const std::vector<std::string>& hooks, const char* phase, std::string* err);
  pid_t spawn(const std::string& cmd, int tty = -1);
  bool open_ptys(std::string* err);
  void close_ptys();
  void pty_events(const std::string& path, bool shared, std::vector<PtyEvent>&& evs);
  int wait_setup_child(pid_t pid, bool* aborted);
  void start_daemon(Daemon& d);
  void reap();
  void on_exit(pid_t pid, int status);
  void begin_stop(const char* why);
  void kill_all(int sig);
  bool stop_groups_gone() const;
  void command(const std::string& line);
  bool read_channel();
};

// fork + setsid + execve("/bin/sh", "-c", cmd). Everything the child touches
// is made before fork: it runs only async-signal-safe calls. With a tty (the
// shared pty's slave), the child's stdio is that terminal, and it is the
// child's controlling terminal.
pid_t Runtime::spawn(const std::string& cmd, int tty) {
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  sigset_t none;
  sigemptyset(&none);
  pid_t pid = fork();
  if (pid != 0) return pid;
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &dfl, nullptr);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  setsid();
  if (tty >= 0) {
    // Fails harmlessly if a process of an earlier session still holds it as its terminal.
    ioctl(tty, TIOCSCTTY, 0);
    if (dup2(tty, 0) < 0 || dup2(tty, 1) < 0 || dup2(tty, 2) < 0) _exit(126);
  }
  // Neither the control channel nor the router's directory fd may reach the vassal's processes.
  syscall(SYS_close_range, 3U, ~0U, 0U);
  execve(argv[0], const_cast<char* const*>(argv), envp_.data());
  static const char msg[] = "moat-vassal: execve /bin/sh failed\n";
  ssize_t ignored = write(2, msg, sizeof msg - 1);
  (void)ignored;
  _exit(127);
}

// Waits for one set-up child while reaping orphans. SIGTERM, SIGINT or the
// channel's end abort the set-up: the child's group is killed.
int Runtime::wait_setup_child(pid_t pid, bool* aborted) {
  *aborted = false;
  for (;;) {
    struct pollfd p[2] = {{sigfd_, POLLIN, 0}, {kChannelFd, POLLRDHUP, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      *aborted = true;
    }
    if (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) *aborted = true;
    if (p[0].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sigfd_, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo != SIGCHLD) *aborted = true;
      }
      int st;
      pid_t got;
      while ((got = waitpid(-1, &st, WNOHANG)) > 0) {
        if (got == pid) return st;
      }
    }
    if (*aborted) {
      kill(-pid, SIGKILL);
      int st;
      waitpid(pid, &st, 0);
      return st;
    }
  }
}

bool Runtime::run_hooks(const std::vector<std::string>& hooks, const char* phase, std::string* err) {
  for (const std::string& cmd : hooks) {
    pid_t pid = spawn(cmd);
    if (pid < 0) {
      *err = errno_text(std::string(phase) + " hook '" + cmd + "': fork");
      return false;
    }
    bool aborted;
    int st = wait_setup_child(pid, &aborted);
    if (aborted) {
      setup_aborted_ = true;
      *err = std::string("stopped during set-up, in the ") + phase + " hook '" + cmd + "'";
      return false;
    }
    emit("hook", status_text(st) + " " + cmd);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      *err = std::string(phase) + " hook failed (" +
             (WIFSIGNALED(st) ? "signal " + std::to_string(WTERMSIG(st)) : "exit " + std::to_string(WEXITSTATUS(st))) +
             "): " + cmd;
      return false;
    }
  }
  return true;
}

bool Runtime::start_device(std::string* err) {
  DeviceOptions o;
  o.name = cfg_.device_name;
  o.socket_path = cfg_.device_socket;
  // The socket's directory, held open: pivot-root hides the path, but
  // /proc/self/fd/N/<name> still reaches the router after a restart.
  std::string dir = ".";
  size_t slash = cfg_.device_socket.find_last_of('/');
  if (slash != std::string::npos) dir = slash == 0 ? "/" : cfg_.device_socket.substr(0, slash);
  o.dir_fd = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (o.dir_fd < 0) {
    *err = errno_text("device: open the router socket's directory " + dir);
    return false;
  }
  // Every value from the vassal file's options or the table's defaults (the emperor sends them all).
  o.max_frame = cfg_.device_max_frame;
  o.queue_bytes = cfg_.device_queue_bytes;
  o.sndbuf = cfg_.device_sndbuf;
  o.reconnect_min_ms = cfg_.device_reconnect_min_ms;
  o.reconnect_max_ms = cfg_.device_reconnect_max_ms;
  o.offload = cfg_.device_offload;
  o.handoff = cfg_.device_handoff;
  o.busy_poll_us = cfg_.device_busy_poll_us;
  connect_efd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (connect_efd_ < 0) {
    *err = errno_text("eventfd");
    return false;
  }
  device_.reset(new Device(o));
  auto sink = [this](std::vector<DeviceEvent>&& evs) {
    for (const DeviceEvent& e : evs) {
      switch (e.type) {
        case DeviceEvent::Type::Connected: emit("device", "connected"); break;
        case DeviceEvent::Type::Disconnected: emit("device", "disconnected " + e.text); break;
        case DeviceEvent::Type::ConnectFailed: emit("device", "connect-failed " + e.text); break;
        case DeviceEvent::Type::Error: emit("error", "device " + cfg_.device_name + ": " + e.text); break;
      }
      if ((e.type == DeviceEvent::Type::Connected || e.type == DeviceEvent::Type::ConnectFailed) &&
          !first_connect_seen_.exchange(true)) {
        uint64_t one = 1;
        ssize_t ignored = write(connect_efd_, &one, sizeof one);
        (void)ignored;
      }
    }
  };
  std::string derr;
  if (!device_->start(sink, &derr)) {
    *err = "device " + cfg_.device_name + ": " + derr;
    return false;
  }
  // Connect before pivot-root when the router is there (uWSGI's order); a
  // router that is not up yet is reached later through the directory fd.
  struct pollfd p = {connect_efd_, POLLIN, 0};
  poll(&p, 1, int(kConnectWaitMs));
  return true;
}

bool Runtime::setup(std::string* err) {
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, 0);
    close(null);
  }
  if ((cfg_.clone_flags & CLONE_NEWNS) && !make_mounts_private(err)) return false;
  if (!run_hooks(cfg_.post_jail, "exec-post-jail", err)) return false;
  if (cfg_.has_device && !start_device(err)) return false;
  if ((cfg_.clone_flags & CLONE_NEWNET) && !set_link_up("lo", err)) return false;
  if (cfg_.has_address && !set_address(cfg_.device_name, cfg_.address, cfg_.prefix_bits, err)) return false;
  if (cfg_.has_route && !add_default_route(cfg_.device_name, cfg_.gateway, err)) return false;
  const bool pty = !cfg_.pty_routers.empty() || cfg_.has_pty_socket;
  if (!cfg_.new_root.empty()) {
    if (!pivot_into(cfg_.new_root, cfg_.put_old, cfg_.vassal_host_dir, cfg_.vassal_mountpoint, pty, err))
      return false;
  } else {
    if (!cfg_.vassal_host_dir.empty() && !bind_dir(cfg_.vassal_host_dir, cfg_.vassal_mountpoint, err)) return false;
    // The host's /proc would show the host's pids: the vassal gets its own.
    if ((cfg_.clone_flags & CLONE_NEWPID) && (cfg_.clone_flags & CLONE_NEWNS) && !mount_proc(err)) return false;
  }
  if (!run_hooks(cfg_.as_root, "exec-as-root", err)) return false;
  // As root still: the sockets get their owner; sessions start after the drop, as the vassal's uid.
  if (pty && !open_ptys(err)) return false;
  if (!drop_privileges(cfg_.uid, cfg_.gid, err)) return false;
  if (!run_hooks(cfg_.as_user, "exec-as-user", err)) return false;
  for (const std::string& cmd : cfg_.daemons) {
    daemons_.push_back(Daemon());
    daemons_.back().cmd = cmd;
  }
  if (shared_pty_) {
    daemons_.push_back(Daemon());
    daemons_.back().cmd = cfg_.pty_daemon;
    daemons_.back().on_pty = true;
  }
  for (Daemon& d : daemons_) start_daemon(d);
  return true;
}

bool Runtime::open_ptys(std::string* err) {
  // Sessions inherit the runtime's uid/gid once it dropped them; a runtime
  // that keeps root starts them as pty-user (or root).
  const bool dropping = cfg_.uid >= 0 || cfg_.gid >= 0;
  for (const PtyRouterConfig& r : cfg_.pty_routers) {
    PtyServerOptions o;
    o.socket.path = r.socket.path;
    o.socket.mode = r.socket.mode;
    o.socket.uid = r.socket.uid;
    o.socket.gid = r.socket.gid;
    o.session.command = cfg_.pty_command;
    o.session.env = env_;
    o.session.uid = dropping ? -1 : cfg_.pty_user_uid;
    o.session.gid = dropping ? -1 : cfg_.pty_user_gid;
    o.session.rows = uint16_t(cfg_.pty_rows);
    o.session.cols = uint16_t(cfg_.pty_cols);
    o.framed = r.framed;
    o.max_sessions = uint32_t(cfg_.pty_max_sessions);
    o.hangup_grace_ms = uint32_t(cfg_.pty_grace_ms);
    std::unique_ptr<PtyServer> srv(new PtyServer(o));
    const std::string path = r.socket.path;
    std::string perr;
    if (!srv->open([this, path](std::vector<PtyEvent>&& evs) { pty_events(path, false, std::move(evs)); }, &perr)) {
      *err = "pty-router " + path + ": " + perr;
      return false;
    }
    pty_routers_.push_back(std::move(srv));
  }
  if (cfg_.has_pty_socket) {
    SharedPtyOptions o;
    o.socket.path = cfg_.pty_socket.path;
    o.socket.mode = cfg_.pty_socket.mode;
    o.socket.uid = cfg_.pty_socket.uid;
    o.socket.gid = cfg_.pty_socket.gid;
    o.command.rows = uint16_t(cfg_.pty_rows);
    o.command.cols = uint16_t(cfg_.pty_cols);
    // command.command stays empty: the runtime attaches pty-daemon to the slave.
    shared_pty_.reset(new SharedPty(o));
    const std::string path = o.socket.path;
    std::string perr;
    if (!shared_pty_->open([this, path](std::vector<PtyEvent>&& evs) { pty_events(path, true, std::move(evs)); },
                           &perr)) {
      shared_pty_.reset();
      *err = "pty-socket " + path + ": " + perr;
      return false;
    }
  }
  return true;
}

// Hangs up every session (SIGHUP, SIGKILL after the grace: this waits up to
// it) and removes the sockets. Idempotent.
void Runtime::close_ptys() {
  for (auto& s : pty_routers_) s->close();
  pty_routers_.clear();
  if (shared_pty_) shared_pty_->close();
  shared_pty_.reset();
}

void Runtime::pty_events(const std::string& path, bool shared, std::vector<PtyEvent>&& evs) {
  for (const PtyEvent& e : evs) {
    const std::string id = std::to_string(e.session);
    switch (e.type) {
      case PtyEvent::Type::SessionStart:
        emit("pty", (shared ? "viewer " : "start ") + path + " " + id + " " +
                        (shared ? "" : std::to_string(e.pid) + " ") + std::to_string(e.peer_uid));
        break;
      case PtyEvent::Type::SessionEnd:
        if (shared) emit("pty", "viewer-end " + path + " " + id + " " + e.text);
        else emit("pty", "end " + path + " " + id + " " + (e.status < 0 ? "unknown" : status_text(e.status)) + " " + e.text);
        break;
      case PtyEvent::Type::Refused:
        emit("pty", "refused " + path + " " + std::to_string(e.peer_uid) + " " + e.text);
        break;
      case PtyEvent::Type::Error:
        emit("error", "pty " + path + ": " + e.text);
        break;
    }
  }
}

void Runtime::start_daemon(Daemon& d) {
  d.restart_at_ms = -1;
  d.started_ms = now_ms();
  d.pid = spawn(d.cmd, d.on_pty && shared_pty_ ? shared_pty_->slave_fd() : -1);
  if (d.pid < 0) {
    d.pid = 0;
    emit("error", errno_text("attach-daemon '" + d.cmd + "': fork"));
    d.restart_at_ms = now_ms() + d.backoff_ms;
    d.backoff_ms = std::min(d.backoff_ms * 2, kDaemonBackoffMaxMs);
    return;
  }
  emit("daemon", "start " + std::to_string(d.pid) + " " + d.cmd);
}

void Runtime::on_exit(pid_t pid, int st) {
  for (Daemon& d : daemons_) {
    if (d.pid != pid) continue;
    d.pid = 0;
    emit("daemon", "exit " + std::to_string(pid) + " " + status_text(st) + " " + d.cmd);
    if (stopping_) return;
    int64_t now = now_ms();
    if (now - d.started_ms >= kDaemonStableMs) d.backoff_ms = kDaemonBackoffMinMs;
    d.restart_at_ms = now + d.backoff_ms;
    d.backoff_ms = std::min(d.backoff_ms * 2, kDaemonBackoffMaxMs);
    return;
  }
  for (size_t i = 0; i < jobs_.size(); i++) {
    if (jobs_[i].pid != pid) continue;
    emit("job-exit", jobs_[i].id + " " + status_text(st) + " " + std::to_string(now_ms() - jobs_[i].started_ms));
    jobs_.erase(jobs_.begin() + long(i));
    return;
  }
  // An orphan reparented to pid 1: reaped, nothing to report.
}

void Runtime::reap() {
  for (;;) {
    int st;
    pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid > 0) {
      on_exit(pid, st);
      continue;
    }
    if (pid < 0 && errno == EINTR) continue;
    children_gone_ = pid < 0 && errno == ECHILD;
    return;
  }
}

void Runtime::kill_all(int sig) {
  if (pid1_) {
    // Every process of the pid namespace this runtime may signal, not itself.
    kill(-1, sig);
    return;
  }
  for (const Daemon& d : daemons_)
    if (d.pid > 0) kill(-d.pid, sig);
  for (const Job& j : jobs_) kill(-j.pid, sig);
}

// Without a pid namespace, stop waits for the process groups it signalled,
// not for every child: an orphan a tenant setsid()'d away is reparented to
// this subreaper but never signalled by it, and waiting for it would only
// delay the emperor's cgroup kill, which ends it once the runtime has exited.
// kill(-pgid, 0) sends nothing; a group number reused by another process
// only delays the exit until the SIGKILL timeout.
bool Runtime::stop_groups_gone() const {
  for (pid_t g : stop_groups_)
    if (kill(-g, 0) == 0 || errno != ESRCH) return false;
  return true;
}

void Runtime::begin_stop(const char* why) {
  if (stopping_) return;
  stopping_ = true;
  log("stopping: ", why);
  for (Daemon& d : daemons_) d.restart_at_ms = -1;
  if (!pid1_) {
    for (const Daemon& d : daemons_)
      if (d.pid > 0) stop_groups_.push_back(d.pid);
    for (const Job& j : jobs_) stop_groups_.push_back(j.pid);
  }
  // No new session from now on; the open ones are hung up.
  close_ptys();
  kill_all(SIGTERM);
  kill_at_ms_ = now_ms() + kStopTimeoutMs;
  reap();
}

void Runtime::command(const std::string& line) {
  std::string k, v;
  split_line(line, &k, &v);
  if (k == "stop") {
    begin_stop("stop from the emperor");
  } else if (k == "job") {
    std::string id, cmd;
    size_t sp = v.find(' ');
    if (sp != std::string::npos) {
      id = v.substr(0, sp);
      cmd = v.substr(sp + 1);
    }
    if (!valid_job_id(id) || cmd.empty()) {
      emit("error", "job: expected 'ID CMD' with an ID of 1-64 characters [A-Za-z0-9._:-]");
    } else if (stopping_) {
      emit("error", "job " + id + ": the vassal is stopping");
    } else if (std::any_of(jobs_.begin(), jobs_.end(), [&](const Job& j) { return j.id == id; })) {
      emit("error", "job " + id + ": a job with this ID is running");
    } else if (jobs_.size() >= kMaxJobs) {
      emit("error", "job " + id + ": " + std::to_string(kMaxJobs) + " jobs are running already");
    } else {
      pid_t pid = spawn(cmd);
      if (pid < 0) {
        emit("error", errno_text("job " + id + ": fork"));
      } else {
        jobs_.push_back(Job{id, pid, now_ms()});
        emit("job-start", id + " " + std::to_string(pid));
      }
    }
  } else if (k == "job-kill") {
    auto it = std::find_if(jobs_.begin(), jobs_.end(), [&](const Job& j) { return j.id == v; });
    if (it == jobs_.end()) emit("error", "job-kill: no running job '" + v.substr(0, kMaxJobId) + "'");
    else kill(-it->pid, SIGKILL);
  } else if (k.compare(0, 4, "pty-") == 0) {
    // The pty servers are opened as root before the privilege drop: set-up only.
    emit("error", k.substr(0, 64) + ": a set-up line (before 'start'), not a command (ignored)");
  } else {
    emit("error", "unknown command '" + k.substr(0, 64) + "' (ignored)");
  }
}

// Reads what the channel has; false once it is closed (or broken).
bool Runtime::read_channel() {
  LineReader::Result r = reader_.fill();
  if (r == LineReader::Result::Error) return false;
  for (;;) {
    std::string line;
    LineReader::Result n = reader_.next(&line);
    if (n == LineReader::Result::Line) command(line);
    else if (n == LineReader::Result::TooLong) emit("error", "a line above 65536 bytes (ignored)");
    else return n != LineReader::Result::Eof;
  }
}

int Runtime::run() {
  pid1_ = getpid() == 1;
  if (!pid1_ && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) return fail(errno_text("PR_SET_CHILD_SUBREAPER"));
  // The launcher blocked these before fork; the device thread inherits the
  // mask, so they all reach the signalfd.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaddset(&set, s);
  sigfd_ = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd_ < 0) return fail(errno_text("signalfd"));

  env_.push_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  for (const std::string& e : cfg_.env) {
    std::string key = e.substr(0, e.find('=') + 1);
    auto same = std::find_if(env_.begin(), env_.end(), [&](const std::string& x) { return x.compare(0, key.size(), key) == 0; });
    if (same != env_.end()) *same = e;
    else env_.push_back(e);
  }
  for (std::string& e : env_) envp_.push_back(&e[0]);
  envp_.push_back(nullptr);

  std::string err;
  if (!setup(&err)) {
    if (setup_aborted_) {
      log("", err);
      finish();
      return 0;
    }
    return fail(err);
  }
  emit("ready");

  bool channel_open = true;
  for (;;) {
    int64_t now = now_ms();
    int64_t due = -1;
    for (const Daemon& d : daemons_)
      if (d.restart_at_ms >= 0 && (due < 0 || d.restart_at_ms < due)) due = d.restart_at_ms;
    if (stopping_) {
      int64_t t = killed_ ? kill_at_ms_ + kKillGraceMs : kill_at_ms_;
      if (due < 0 || t < due) due = t;
    }
    int timeout = due < 0 ? -1 : int(std::max<int64_t>(0, due - now));
    // [0] signals, [1] the channel, [2..] the pty servers' epoll fds.
    struct pollfd p[2 + 3] = {{sigfd_, POLLIN, 0}, {channel_open ? kChannelFd : -1, POLLIN, 0}};
    nfds_t np = 2;
    for (auto& srv : pty_routers_) p[np++] = {srv->fd(), POLLIN, 0};
    if (shared_pty_) p[np++] = {shared_pty_->fd(), POLLIN, 0};
    int n = poll(p, np, timeout);
    if (n < 0 && errno != EINTR) return fail(errno_text("poll"));
    // Before the reaper: a session's end is then seen through its pidfd,
    // with its exit status, before waitpid(-1) takes it.
    if (n > 0) {
      nfds_t i = 2;
      for (auto& srv : pty_routers_)
        if (p[i++].revents) srv->handle();
      if (shared_pty_ && p[i].revents) shared_pty_->handle();
    }
    if (n > 0 && (p[0].revents & POLLIN)) {
      struct signalfd_siginfo si;
      while (read(sigfd_, &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGCHLD) reap();
        else begin_stop(strsignal(int(si.ssi_signo)));
      }
    }
    if (n > 0 && channel_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (!read_channel()) {
        channel_open = false;
        begin_stop("the control channel closed");
      }
    }
    now = now_ms();
    for (Daemon& d : daemons_)
      if (d.restart_at_ms >= 0 && d.restart_at_ms <= now && !stopping_) start_daemon(d);
    if (stopping_) {
      reap();
      if (children_gone_ || (!pid1_ && stop_groups_gone())) break;
      if (!killed_ && now >= kill_at_ms_) {
        log("stopping: ", "processes left after " + std::to_string(kStopTimeoutMs) + " ms, SIGKILL");
        kill_all(SIGKILL);
        killed_ = true;
      } else if (killed_ && now >= kill_at_ms_ + kKillGraceMs) {
        emit("error", "processes the runtime may not kill are left; exiting anyway");
        break;
      }
    }
  }
  finish();
  return 0;
}

}  // namespace

int run_runtime(Config& cfg, LineReader& reader) {
  Runtime rt(cfg, reader);
  return rt.run();
}

}  // namespace vassal
}  // namespace moat
