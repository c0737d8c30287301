// pty_common.h: what the pty units share (pty_router, pty_shared,
// pty_client; docs/pty.md): the events a server reports and the batches they
// reach the embedder in, byte queues with backpressure, an epoll set whose
// interest follows what each fd can take, the state both servers start
// from (those events, that epoll set, their listening socket), the thread a
// server may run on, and the framed wire format's modifier2 values.
//
// Job: plumbing only; each server keeps its own policy (what to read, when
// to stop reading, when a session ends).
// Limits: an epoll tag packs an id (up to 2^61) and the kind of fd (PtyFd);
// drain() handles at most 16 x 64 events per call, so one busy server cannot
// starve the embedder's other work.
// Threads: PtyThread starts one thread per server that waits on the server's
// epoll fd and a stop eventfd, with every signal blocked (signals belong to
// the embedding program's main thread). Everything else runs on the caller's.
// Syscalls: epoll_create1, epoll_ctl, epoll_wait, eventfd, poll, read, write,
// send (MSG_NOSIGNAL | MSG_DONTWAIT), close, pthread_sigmask.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "pty_socket.h"

namespace moat {

// Framed mode (forkpty-urouter, pty-uconnect): uwsgi frames (frame.h) whose
// modifier2 says what the frame is.
constexpr uint8_t kPtyModStdin = 0;      // payload: bytes for the pty
constexpr uint8_t kPtyModMaxSignal = 99; // 1..99: send that signal, no payload
constexpr uint8_t kPtyModRows = 100;     // size field: rows
constexpr uint8_t kPtyModCols = 101;     // size field: cols

struct PtyEvent {
  enum class Type { SessionStart, SessionEnd, Refused, Error };
  PtyEvent() = default;
  explicit PtyEvent(Type t) : type(t) {}
  Type type = Type::Error;
  uint64_t session = 0;      // session id (from 1)
  pid_t pid = 0;             // SessionStart/End: the session's first process
  int64_t peer_uid = -1, peer_pid = -1;  // SessionStart/Refused: SO_PEERCRED of the client
  int status = -1;           // SessionEnd: wait status of the first process (-1 unknown)
  std::string text;          // SessionEnd: why ("client closed", "process exited", "server stopped");
                             // Refused: why; Error: the message
};

using PtyEventSink = std::function<void(std::vector<PtyEvent>&&)>;

// Events gathered while a server handles its fds, handed to the sink as
// one batch (one call per handle(), not one per event).
class PtyEvents {
 public:
  void set_sink(PtyEventSink sink) { sink_ = std::move(sink); }
  void add(PtyEvent e) { pending_.push_back(std::move(e)); }
  void error(const std::string& message);
  void flush();  // calls the sink with everything gathered; nothing if empty

 private:
  PtyEventSink sink_;
  std::vector<PtyEvent> pending_;
};

// A byte queue: append at the back, consume from the front.
class ByteQueue {
 public:
  size_t size() const { return buf_.size() - off_; }
  bool empty() const { return size() == 0; }
  const char* data() const { return buf_.data() + off_; }
  void append(const char* p, size_t n) { buf_.append(p, n); }
  void consume(size_t n);
  void clear() {
    buf_.clear();
    off_ = 0;
  }

 private:
  std::string buf_;
  size_t off_ = 0;
};

// Writes as much of q as fd takes now (a socket: send with MSG_NOSIGNAL).
// False on a hard error (the peer is gone).
bool flush_queue(int fd, ByteQueue& q, bool socket);

// What an epoll event is about: tag = id * 8 + kind.
enum class PtyFd : uint64_t { Listen = 0, Client = 1, Master = 2, Pidfd = 3, Timer = 4 };
inline uint64_t pty_tag(uint64_t id, PtyFd kind) { return id * 8 + uint64_t(kind); }
inline uint64_t pty_tag_id(uint64_t tag) { return tag / 8; }
inline PtyFd pty_tag_fd(uint64_t tag) { return PtyFd(tag % 8); }

// A server's epoll set.
class PtyEpoll {
 public:
  PtyEpoll() = default;
  PtyEpoll(const PtyEpoll&) = delete;
  PtyEpoll& operator=(const PtyEpoll&) = delete;
  ~PtyEpoll() { close(); }

  bool open(std::string* err);  // false with *err; "already open" if it is
  void close();
  int fd() const { return fd_; }
  // Makes fd's registered interest `want` (0: not registered) if `have`, the
  // interest registered so far, differs; updates `have`. False on failure.
  bool watch(int fd, uint32_t& have, uint32_t want, uint64_t tag);
  // Registers fd for EPOLLIN until it is closed (listening socket, pidfd, timer).
  bool add(int fd, uint64_t tag);
  // Calls on_event(tag, events) for what is ready now, without blocking.
  void drain(const std::function<void(uint64_t tag, uint32_t events)>& on_event);

 private:
  int fd_ = -1;
};

// A server served on a thread of its own until stop() (the addon's use; an
// embedding program's event loop calls the server's handle() itself).
class PtyThread {
 public:
  PtyThread() = default;
  PtyThread(const PtyThread&) = delete;
  PtyThread& operator=(const PtyThread&) = delete;
  ~PtyThread() { stop(); }

  // Calls handle() whenever epfd is readable. False with *err.
  bool start(int epfd, std::function<void()> handle, std::string* err);
  void stop();  // wakes and joins the thread; idempotent

 private:
  std::thread thread_;
  int stop_fd_ = -1;
};

// What both servers' state starts with: their events, their epoll set and
// their listening socket (registered as pty_tag(0, PtyFd::Listen)).
struct PtyServerCore {
  PtyEvents events;
  PtyEpoll epoll;
  PtyListenSocket listener;

  // Opens the epoll set and the socket. False with *err, and nothing open.
  bool open(const PtySocketOptions& o, PtyEventSink sink, std::string* err);
  bool is_open() const { return epoll.fd() >= 0; }
  // Closes the socket (removing its file) and the epoll set, then hands the
  // last events to the sink.
  void close();
  // PtyEpoll::watch; a failure becomes an Error event.
  void watch(int fd, uint32_t& have, uint32_t want, uint64_t tag);
};

// "what: strerror(errno)".
std::string pty_errtext(const std::string& what);
// Closes fd if open and sets it to -1.
void pty_close(int& fd);

}  // namespace moat
