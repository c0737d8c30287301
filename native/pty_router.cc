// pty_router.cc: the forkpty router (pty_router.h says what it does, its
// limits and its syscalls).
#include "pty_router.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "frame.h"

namespace moat {

struct PtyServer::Session {
  uint64_t id = 0;
  PtyLeader leader;
  int client = -1, master = -1, timer = -1;
  uint32_t client_mask = 0, master_mask = 0;  // registered epoll interest (0 = not registered)
  ByteQueue to_master, to_client;
  winsize ws{};
  // framed parser state: a header being read, or the payload left of a stdin frame
  uint8_t hdr[kFrameHeaderSize] = {};
  size_t hdr_len = 0;
  size_t payload_left = 0;
  // ending
  int hangup_stage = 0;  // 0 live, 1 SIGHUP sent (timer armed), 2 SIGKILL sent (timer armed), 3 done
  std::string reason;
};

struct PtyServer::Impl : PtyServerCore {
  PtyServerOptions o;
  uint64_t next_id = 1;
  std::map<uint64_t, std::unique_ptr<Session>> sessions;
  std::atomic<uint64_t> started{0}, ended{0}, refused{0}, active{0}, bytes_in{0}, bytes_out{0}, signals{0},
      resizes{0}, ignored{0};

  // Reads from a side only while the other side's queue has room.
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
    watch(s.client, s.client_mask, cw, pty_tag(s.id, PtyFd::Client));
    watch(s.master, s.master_mask, mw, pty_tag(s.id, PtyFd::Master));
  }

  void close_client(Session& s) {
    if (s.client < 0) return;
    watch(s.client, s.client_mask, 0, 0);
    pty_close(s.client);
    s.to_client.clear();
  }
  void close_master(Session& s) {
    if (s.master < 0) return;
    watch(s.master, s.master_mask, 0, 0);
    pty_close(s.master);  // the kernel hangs up the slave side
    s.to_master.clear();
  }

  void arm(Session& s, uint32_t ms) {
    if (s.timer < 0) {
      s.timer = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
      if (s.timer < 0) {
        events.error(pty_errtext("timerfd_create"));
        return;
      }
      epoll.add(s.timer, pty_tag(s.id, PtyFd::Timer));
    }
    itimerspec its{};
    its.it_value.tv_sec = ms / 1000;
    its.it_value.tv_nsec = long(ms % 1000) * 1000000L + 1;
    ::timerfd_settime(s.timer, 0, &its, nullptr);
  }

  // Starts ending the session: SIGHUP (and SIGCONT) to every process of its
  // session now, SIGKILL after the grace (on_timer).
  void hangup(Session& s, const std::string& reason) {
    if (s.hangup_stage != 0) return;
    s.reason = reason;
    s.hangup_stage = 1;
    s.leader.hangup();
    arm(s, o.hangup_grace_ms);
  }

  void on_timer(Session& s) {
    uint64_t n;
    if (::read(s.timer, &n, sizeof(n)) < 0) {}
    if (s.hangup_stage == 1) {
      s.leader.kill();
      s.hangup_stage = 2;
      arm(s, o.hangup_grace_ms);  // last chance for the pty to drain
    } else if (s.hangup_stage == 2) {
      // Something outside the session still holds the slave: stop waiting.
      pty_signal_session(s.leader.pid(), SIGKILL);
      close_master(s);
      if (s.to_client.empty()) close_client(s);
      s.hangup_stage = 3;
    }
  }

  void on_exit(Session& s) {
    if (s.leader.reap()) hangup(s, "process exited");
  }

  // A client's framed bytes, as a stream: a frame's header may arrive in
  // pieces, and a stdin payload goes to the pty as it comes.
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
      size_t take = std::min(n, kFrameHeaderSize - s.hdr_len);
      std::memcpy(s.hdr + s.hdr_len, p, take);
      s.hdr_len += take;
      p += take;
      n -= take;
      if (s.hdr_len < kFrameHeaderSize) break;
      s.hdr_len = 0;
      const FrameHeader h = decode_frame_header(s.hdr);
      if (h.mod2 == kPtyModStdin) {
        s.payload_left = h.size;
      } else if (h.mod2 <= kPtyModMaxSignal) {
        signals++;
        pid_t pg = s.master >= 0 ? ::tcgetpgrp(s.master) : -1;
        if (pg > 0) {
          ::kill(-pg, h.mod2);
        } else {
          s.leader.signal(h.mod2);
        }
      } else if (h.mod2 == kPtyModRows || h.mod2 == kPtyModCols) {
        resizes++;
        (h.mod2 == kPtyModRows ? s.ws.ws_row : s.ws.ws_col) = h.size;
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

  // One pending connection: a session, or refused. False when none was pending.
  bool accept_one() {
    int64_t puid, ppid;
    int c = listener.accept(&puid, &ppid);
    if (c < 0) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) events.error(pty_errtext("accept"));
      return false;
    }
    auto refuse = [&](const std::string& why) {
      ::close(c);
      refused++;
      PtyEvent e{PtyEvent::Type::Refused};
      e.peer_uid = puid;
      e.peer_pid = ppid;
      e.text = why;
      events.add(std::move(e));
      return true;
    };
    if (sessions.size() >= o.max_sessions) return refuse("max_sessions (" + std::to_string(o.max_sessions) + ") reached");
    auto s = std::make_unique<Session>();
    s->id = next_id++;
    s->client = c;
    s->ws.ws_row = o.session.rows;
    s->ws.ws_col = o.session.cols;
    int slave = -1;
    std::string err;
    if (!open_pty(o.session.rows, o.session.cols, &s->master, &slave, &err)) return refuse(err);
    bool spawned = s->leader.spawn(slave, o.session, &err);
    ::close(slave);
    if (!spawned) {
      pty_close(s->master);
      return refuse(err);
    }
    epoll.add(s->leader.pidfd(), pty_tag(s->id, PtyFd::Pidfd));
    update(*s);
    started++;
    active++;
    PtyEvent e{PtyEvent::Type::SessionStart};
    e.session = s->id;
    e.pid = s->leader.pid();
    e.peer_uid = puid;
    e.peer_pid = ppid;
    events.add(std::move(e));
    sessions.emplace(s->id, std::move(s));
    return true;
  }

  void session_end(Session& s) {
    pty_close(s.timer);
    PtyEvent e{PtyEvent::Type::SessionEnd};
    e.session = s.id;
    e.pid = s.leader.pid();
    e.status = s.leader.status();
    e.text = s.reason;
    events.add(std::move(e));
    ended++;
    active--;
  }

  // A session is over when its connection and pty are closed, its first
  // process is reaped and the SIGKILL sweep has run.
  void reap_finished() {
    for (auto it = sessions.begin(); it != sessions.end();) {
      Session& s = *it->second;
      if (s.client < 0 && s.master < 0 && !s.leader.alive() && s.hangup_stage >= 2) {
        if (s.hangup_stage == 2) pty_signal_session(s.leader.pid(), SIGKILL);
        session_end(s);
        it = sessions.erase(it);
      } else {
        ++it;
      }
    }
  }

  void on_event(uint64_t tag, uint32_t ev) {
    if (pty_tag_fd(tag) == PtyFd::Listen) {
      for (int a = 0; a < 16 && accept_one(); a++) {}
      return;
    }
    auto it = sessions.find(pty_tag_id(tag));
    if (it == sessions.end()) return;
    Session& s = *it->second;
    switch (pty_tag_fd(tag)) {
      case PtyFd::Client: if (s.client >= 0) on_client(s, ev); break;
      case PtyFd::Master: if (s.master >= 0) on_master(s, ev); break;
      case PtyFd::Pidfd: if (s.leader.alive()) on_exit(s); break;
      case PtyFd::Timer: if (s.timer >= 0) on_timer(s); break;
      default: break;
    }
    if (s.client >= 0 && s.master < 0 && s.to_client.empty()) close_client(s);
    update(s);
  }

  void handle() {
    epoll.drain([this](uint64_t tag, uint32_t ev) { on_event(tag, ev); });
    reap_finished();
    events.flush();
  }

  void close_all() {
    std::vector<PtyLeader*> leaders;
    for (auto& [id, s] : sessions) {
      close_client(*s);
      close_master(*s);
      if (s->hangup_stage == 0) s->reason = "server stopped";
      leaders.push_back(&s->leader);
    }
    pty_end_sessions(leaders, o.hangup_grace_ms);
    for (auto& [id, s] : sessions) session_end(*s);
    sessions.clear();
    PtyServerCore::close();
  }
};

PtyServer::PtyServer(PtyServerOptions opts) : impl_(std::make_unique<Impl>()) { impl_->o = std::move(opts); }
PtyServer::~PtyServer() { stop(); }

bool PtyServer::open(PtyEventSink sink, std::string* err) {
  if (!impl_->open(impl_->o.socket, std::move(sink), err)) return false;
  epfd_ = impl_->epoll.fd();
  return true;
}

void PtyServer::handle() {
  if (impl_->is_open()) impl_->handle();
}

void PtyServer::close() {
  if (impl_->is_open()) impl_->close_all();
  epfd_ = -1;
}

bool PtyServer::start(PtyEventSink sink, std::string* err) {
  if (!open(std::move(sink), err)) return false;
  if (thread_.start(epfd_, [this] { handle(); }, err)) return true;
  close();
  return false;
}

void PtyServer::stop() {
  thread_.stop();
  close();
}

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

}  // namespace moat
