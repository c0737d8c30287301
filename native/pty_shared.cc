// pty_shared.cc: the shared pty (pty_shared.h says what it does, its limits
// and its syscalls).
#include "pty_shared.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <vector>

namespace moat {

namespace {
constexpr uint32_t kCommandGraceMs = 1000;  // close(): SIGHUP -> SIGKILL for the command's session
}

struct SharedPty::Impl : PtyServerCore {
  SharedPtyOptions o;
  int master = -1, slave = -1;
  PtyLeader command;
  struct Viewer {
    int fd = -1;
    uint32_t mask = 0;
    ByteQueue out;
  };
  std::map<uint64_t, Viewer> viewers;
  uint64_t next_id = 1;
  std::string scrollback;
  ByteQueue to_master;
  uint32_t master_mask = 0;

  void drop_viewer(uint64_t id, const std::string& why) {
    auto it = viewers.find(id);
    if (it == viewers.end()) return;
    watch(it->second.fd, it->second.mask, 0, 0);
    ::close(it->second.fd);
    viewers.erase(it);
    PtyEvent e{PtyEvent::Type::SessionEnd};
    e.session = id;
    e.text = why;
    events.add(std::move(e));
  }

  void update_viewer(uint64_t id, Viewer& v) {
    watch(v.fd, v.mask, EPOLLIN | (v.out.empty() ? 0u : uint32_t(EPOLLOUT)), pty_tag(id, PtyFd::Client));
  }
  void update_master() {
    watch(master, master_mask, EPOLLIN | (to_master.empty() ? 0u : uint32_t(EPOLLOUT)), pty_tag(0, PtyFd::Master));
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
      if (!flush_queue(v.fd, v.out, true) || v.out.size() > o.queue_bytes) {
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

  bool accept_one() {
    PtyEvent e{PtyEvent::Type::SessionStart};
    int c = listener.accept(&e.peer_uid, &e.peer_pid);
    if (c < 0) return false;
    if (viewers.size() >= o.max_viewers) {
      ::close(c);
      e.type = PtyEvent::Type::Refused;
      e.text = "max_viewers reached";
      events.add(std::move(e));
      return true;
    }
    uint64_t id = next_id++;
    Viewer& v = viewers[id];
    v.fd = c;
    v.out.append(scrollback.data(), scrollback.size());
    flush_queue(c, v.out, true);
    update_viewer(id, v);
    e.session = id;
    events.add(std::move(e));
    return true;
  }

  void on_exit() {
    if (!command.reap()) return;
    command.hangup();
    PtyEvent e{PtyEvent::Type::SessionEnd};
    e.pid = command.pid();
    e.status = command.status();
    e.text = "process exited";
    events.add(std::move(e));
  }

  void on_event(uint64_t tag, uint32_t ev) {
    switch (pty_tag_fd(tag)) {
      case PtyFd::Listen: for (int a = 0; a < 16 && accept_one(); a++) {} break;
      case PtyFd::Master: on_master(ev); update_master(); break;
      case PtyFd::Pidfd: if (command.alive()) on_exit(); break;
      case PtyFd::Client: on_viewer(pty_tag_id(tag), ev); break;
      default: break;
    }
  }

  void handle() {
    epoll.drain([this](uint64_t tag, uint32_t ev) { on_event(tag, ev); });
    events.flush();
  }

  void close_all() {
    std::vector<uint64_t> ids;
    for (auto& [id, v] : viewers) ids.push_back(id);
    for (uint64_t id : ids) drop_viewer(id, "server stopped");
    if (command.pid() > 0) pty_end_sessions({&command}, kCommandGraceMs);
    pty_close(master);
    pty_close(slave);
    PtyServerCore::close();
  }
};

SharedPty::SharedPty(SharedPtyOptions opts) : impl_(std::make_unique<Impl>()) { impl_->o = std::move(opts); }
SharedPty::~SharedPty() { stop(); }

bool SharedPty::open(PtyEventSink sink, std::string* err) {
  Impl& m = *impl_;
  if (!m.open(m.o.socket, std::move(sink), err)) return false;
  bool ok = open_pty(m.o.command.rows, m.o.command.cols, &m.master, &m.slave, err);
  if (ok) m.update_master();
  if (ok && !m.o.command.command.empty()) {
    ok = m.command.spawn(m.slave, m.o.command, err);
    if (ok) m.epoll.add(m.command.pidfd(), pty_tag(0, PtyFd::Pidfd));
  }
  if (!ok) {
    m.close_all();
    return false;
  }
  epfd_ = m.epoll.fd();
  return true;
}

void SharedPty::handle() {
  if (impl_->is_open()) impl_->handle();
}

void SharedPty::close() {
  if (impl_->is_open()) impl_->close_all();
  epfd_ = -1;
}

bool SharedPty::start(PtyEventSink sink, std::string* err) {
  if (!open(std::move(sink), err)) return false;
  if (thread_.start(epfd_, [this] { handle(); }, err)) return true;
  close();
  return false;
}

void SharedPty::stop() {
  thread_.stop();
  close();
}

int SharedPty::slave_fd() const { return impl_->slave; }
pid_t SharedPty::command_pid() const { return impl_->command.pid(); }

}  // namespace moat
