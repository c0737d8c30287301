// path_walk.h: opening a directory by a path a tenant may have touched,
// without following anything: one component at a time with
// O_PATH|O_DIRECTORY|O_NOFOLLOW from / (or from the working directory for a
// relative path). A symlink, a non-directory or `..` on the way is refused,
// never followed. Used where root works in a tenant's directory (pty sockets:
// pty_socket.cc; removing a vassal's directory: remove_tree.cc).
// Syscalls: open, openat, fstat, close.
#pragma once
#include <string>

namespace moat {

enum class WalkError { None, Missing, Link, DotDot, Other };

struct WalkResult {
  int fd = -1;                     // an O_PATH directory fd, or -1
  WalkError error = WalkError::None;
  int errno_value = 0;             // with Other (and Missing: ENOENT)
  std::string walked;              // the path up to the component that failed
};

// `path` names a directory; "" or "/" is the root (or "." relative).
WalkResult open_dir_nofollow(const std::string& path);

}  // namespace moat
