// channel.h: the vassal runtime's control channel (docs/runtime-protocol.md)
// and the vassal's configuration read from it before "start".
//
// Job: split the bytes of fd 3 into lines of at most kMaxLine bytes (a longer
// line is reported and skipped, never buffered whole), parse the set-up
// keywords into a Config, and write event lines back. Every length and number
// read from the channel is checked here; nothing past this file trusts them.
//
// Limits: at most kMaxConfigLines set-up lines; a VALUE may not contain a
// newline (the framing forbids it) and event lines have newlines replaced.
// Event lines are written whole with one write() each under a mutex, so the
// device thread and the main thread never interleave inside a line.
//
// Syscalls: read, write (both on fd 3), inet_pton (no syscall).
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace moat {
namespace vassal {

constexpr size_t kMaxLine = 65536;          // bytes, newline excluded
constexpr size_t kMaxConfigLines = 4096;    // set-up lines before "start"
constexpr int kChannelFd = 3;

class LineReader {
 public:
  enum class Result { Line, NeedMore, TooLong, Eof, Error };
  explicit LineReader(int fd) : fd_(fd) {}

  // The next complete line from what is buffered (without reading).
  // TooLong: a line exceeded kMaxLine; its bytes up to the next newline are
  // discarded and the reader goes on with the line after it.
  Result next(std::string* line);
  // One read() into the buffer: NeedMore when bytes arrived (or EAGAIN/EINTR),
  // Eof, or Error (errno kept).
  Result fill();
  bool eof() const { return eof_; }

 private:
  int fd_;
  std::string buf_;
  bool discarding_ = false;  // inside an over-long line: drop until newline
  bool eof_ = false;
};

// Splits "KEYWORD VALUE" at the first space (VALUE may be empty).
void split_line(const std::string& line, std::string* keyword, std::string* value);

// Where a pty server listens inside the vassal, and who may connect.
struct PtySocketConfig {
  std::string path;                    // absolute, at most 107 bytes
  uint32_t mode = 0600;
  long uid = -1, gid = -1;             // owner of the socket file; -1 keeps the runtime's
};

struct PtyRouterConfig {
  bool framed = false;                 // forkpty-urouter (framed) or forkpty-router (raw)
  PtySocketConfig socket;
};

struct Config {
  std::string name = "vassal";
  int clone_flags = 0;                 // CLONE_NEW* bits
  bool has_device = false;
  std::string device_name, device_socket;
  // The device's options: one line each, all required with `device` (the
  // emperor sends every one from its row of the option table; the runtime
  // has no defaults of its own). kDeviceLines says their bounds.
  bool device_offload = false;         // device-offload on|off (docs/offload.md)
  bool device_handoff = false;         // device-handoff on|off (docs/one-hop.md)
  uint32_t device_busy_poll_us = 0;    // device-busy-poll MICROSECONDS (docs/busy-poll.md)
  uint32_t device_sndbuf = 0;          // device-sndbuf BYTES (0: the kernel's)
  uint32_t device_max_frame = 0;       // device-max-frame BYTES
  uint32_t device_queue_bytes = 0;     // device-queue-bytes BYTES
  uint32_t device_reconnect_min_ms = 0;  // device-reconnect-min MS
  uint32_t device_reconnect_max_ms = 0;  // device-reconnect-max MS
  bool has_address = false;
  uint32_t address = 0;                // network byte order
  int prefix_bits = 32;
  bool has_route = false;
  uint32_t gateway = 0;                // network byte order
  std::string vassal_host_dir, vassal_mountpoint;
  // cgroup PATH (repeatable): the vassal's cgroup on each hierarchy; the
  // launcher joins them all before anything of the vassal runs, so every
  // process it starts is counted, limited and killed with it.
  std::vector<std::string> cgroups;
  std::string new_root, put_old;
  std::vector<std::string> post_jail, as_root, as_user, daemons, env;
  long uid = -1, gid = -1;
  // The pty servers (forkpty-router, pty-socket), opened after the
  // exec-as-root hooks, before the privilege drop.
  std::vector<PtyRouterConfig> pty_routers;  // at most one raw and one framed
  std::string pty_command;             // empty: /bin/sh
  long pty_rows = 24, pty_cols = 80;
  long pty_grace_ms = 1000, pty_max_sessions = 64;
  long pty_user_uid = -1, pty_user_gid = -1;  // sessions' user when the runtime keeps root
  bool has_pty_socket = false;
  PtySocketConfig pty_socket;
  std::string pty_daemon;              // the daemon whose stdio is the shared pty's slave

  // Applies one set-up line. Returns false with *err for an unknown keyword,
  // a malformed value or a repeated single-valued keyword.
  bool apply(const std::string& keyword, const std::string& value, std::string* err);
  // Checks the combination once "start" came (e.g. pivot-root needs fs).
  bool check(std::string* err) const;

 private:
  std::vector<std::string> seen_;      // single-valued keywords already set
  bool once(const std::string& keyword, std::string* err);
};

// The numeric device lines and their bounds (native/option_bounds.h): what
// `moat-vassal --device-options` lists, so a unit test can hold them against
// the option table. device-offload (on|off) is the one non-numeric line.
struct DeviceLine {
  const char* keyword;
  int64_t lo, hi;
  uint32_t Config::*field;
};
extern const DeviceLine kDeviceLines[];
extern const size_t kDeviceLineCount;

// The device's on|off lines, required with `device` as the numbers are.
struct DeviceSwitch {
  const char* keyword;
  bool Config::*field;
};
extern const DeviceSwitch kDeviceSwitches[];
extern const size_t kDeviceSwitchCount;

// Event lines to the emperor. Thread-safe; a failed write is dropped (the
// emperor is gone: the runtime notices through EOF on the read side).
void emit(const char* keyword, const std::string& value = std::string());

// "signal N" or the exit code, from a wait status.
std::string status_text(int wstatus);

}  // namespace vassal
}  // namespace moat
