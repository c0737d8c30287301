// pty_common.cc: the pty servers' shared plumbing (pty_common.h says what
// it is, its limits and its syscalls).
#include "pty_common.h"

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace moat {

std::string pty_errtext(const std::string& what) { return what + ": " + std::strerror(errno); }

void pty_close(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

void PtyEvents::error(const std::string& message) {
  PtyEvent e{PtyEvent::Type::Error};
  e.text = message;
  add(std::move(e));
}

void PtyEvents::flush() {
  if (pending_.empty()) return;
  std::vector<PtyEvent> batch;
  batch.swap(pending_);
  if (sink_) sink_(std::move(batch));
}

void ByteQueue::consume(size_t n) {
  off_ += n;
  if (off_ == buf_.size()) {
    clear();
  } else if (off_ > 65536 && off_ * 2 > buf_.size()) {
    buf_.erase(0, off_);
    off_ = 0;
  }
}

bool flush_queue(int fd, ByteQueue& q, bool socket) {
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

bool PtyEpoll::open(std::string* err) {
  if (fd_ >= 0) {
    *err = "already open";
    return false;
  }
  fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd_ < 0) {
    *err = pty_errtext("epoll_create1");
    return false;
  }
  return true;
}

void PtyEpoll::close() { pty_close(fd_); }

bool PtyEpoll::watch(int fd, uint32_t& have, uint32_t want, uint64_t tag) {
  if (fd < 0 || have == want) return true;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = tag;
  if (want == 0) {
    ::epoll_ctl(fd_, EPOLL_CTL_DEL, fd, nullptr);
  } else if (::epoll_ctl(fd_, have == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0) {
    return false;
  }
  have = want;
  return true;
}

bool PtyEpoll::add(int fd, uint64_t tag) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag;
  return ::epoll_ctl(fd_, EPOLL_CTL_ADD, fd, &ev) == 0;
}

void PtyEpoll::drain(const std::function<void(uint64_t, uint32_t)>& on_event) {
  epoll_event evs[64];
  for (int round = 0; round < 16; round++) {
    int n = ::epoll_wait(fd_, evs, 64, 0);
    if (n <= 0) break;
    for (int i = 0; i < n; i++) on_event(evs[i].data.u64, evs[i].events);
    if (n < 64) break;
  }
}

bool PtyServerCore::open(const PtySocketOptions& o, PtyEventSink sink, std::string* err) {
  if (!epoll.open(err)) return false;
  events.set_sink(std::move(sink));
  bool ok = listener.open(o, err);
  if (ok && !epoll.add(listener.fd(), pty_tag(0, PtyFd::Listen))) {
    *err = pty_errtext("epoll_ctl");
    ok = false;
  }
  if (!ok) {
    listener.close();
    epoll.close();
  }
  return ok;
}

void PtyServerCore::close() {
  listener.close();
  epoll.close();
  events.flush();
}

void PtyServerCore::watch(int fd, uint32_t& have, uint32_t want, uint64_t tag) {
  if (!epoll.watch(fd, have, want, tag)) events.error(pty_errtext("epoll_ctl"));
}

namespace {
void serve(int epfd, int stop_fd, std::function<void()> handle) {
  sigset_t all;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
  pollfd p[2] = {{epfd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
  for (;;) {
    int n = ::poll(p, 2, -1);
    if (n < 0 && errno != EINTR) break;
    if (p[1].revents) break;
    if (p[0].revents) handle();
  }
}
}  // namespace

bool PtyThread::start(int epfd, std::function<void()> handle, std::string* err) {
  if (thread_.joinable()) {
    *err = "already started";
    return false;
  }
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) {
    *err = pty_errtext("eventfd");
    return false;
  }
  thread_ = std::thread(serve, epfd, stop_fd_, std::move(handle));
  return true;
}

void PtyThread::stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    if (::write(stop_fd_, &one, sizeof(one)) < 0) {}
    thread_.join();
  }
  pty_close(stop_fd_);
}

}  // namespace moat
