// path_walk.cc: see path_walk.h.
#include "path_walk.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace moat {

WalkResult open_dir_nofollow(const std::string& path) {
  WalkResult r;
  const bool absolute = !path.empty() && path[0] == '/';
  int dir = ::open(absolute ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    r.error = WalkError::Other;
    r.errno_value = errno;
    r.walked = absolute ? "/" : ".";
    return r;
  }
  r.walked = absolute ? "" : ".";
  for (size_t pos = 0; pos <= path.size();) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    const std::string part = path.substr(pos, slash - pos);
    pos = slash + 1;
    if (part.empty() || part == ".") continue;
    r.walked += "/" + part;
    if (part == "..") {
      ::close(dir);
      r.error = WalkError::DotDot;
      return r;
    }
    int next = ::openat(dir, part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    struct stat st {};
    if (next >= 0 && (::fstat(next, &st) != 0 || !S_ISDIR(st.st_mode))) {
      ::close(next);
      next = -1;
      e = ENOTDIR;
    }
    ::close(dir);
    if (next < 0) {
      r.error = e == ENOENT ? WalkError::Missing : (e == ELOOP || e == ENOTDIR) ? WalkError::Link : WalkError::Other;
      r.errno_value = e;
      return r;
    }
    dir = next;
  }
  r.fd = dir;
  return r;
}

}  // namespace moat
