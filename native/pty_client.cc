// pty_client.cc: the terminal client (pty_client.h says what it does, its
// limits and its syscalls).
#include "pty_client.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "frame.h"
#include "pty_common.h"

namespace moat {

namespace {

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
  uint8_t pkt[2 * kFrameHeaderSize];
  encode_frame_header(pkt, ws.ws_row, kPtyModRows);
  encode_frame_header(pkt + kFrameHeaderSize, ws.ws_col, kPtyModCols);
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
    *err = pty_errtext("socket");
    return 1;
  }
  if (::connect(sock, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    *err = pty_errtext("connect " + o.path);
    ::close(sock);
    return 1;
  }

  // Signals end the client (after the terminal is restored) or resize it.
  // Handlers write to a pipe, so it works whichever thread receives them.
  int sp[2];
  if (::pipe2(sp, O_CLOEXEC | O_NONBLOCK) != 0) {
    *err = pty_errtext("pipe2");
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
    *err = pty_errtext("send");
    rc = 1;
  }
  char buf[8192];
  while (rc == 0) {
    pollfd p[3] = {{sock, POLLIN, 0}, {sp[0], POLLIN, 0}, {in_open ? o.in_fd : -1, POLLIN, 0}};
    int n = ::poll(p, 3, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = pty_errtext("poll");
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
        *err = pty_errtext("read " + o.path);
        rc = 1;
        break;
      }
      if (!write_all(o.out_fd, buf, size_t(r))) {
        *err = pty_errtext("write to the terminal");
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
        char frame[kFrameHeaderSize + sizeof(buf)];
        encode_frame_header(reinterpret_cast<uint8_t*>(frame), uint16_t(r), kPtyModStdin);
        std::memcpy(frame + kFrameHeaderSize, buf, size_t(r));
        ok = send_all(sock, frame, kFrameHeaderSize + size_t(r));
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
