// remove_tree.cc: removes a tree a tenant can write without following a link
// (remove_tree.h says how, its limits and its syscalls).
#include "remove_tree.h"

#include "path_walk.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <vector>

namespace moat {

namespace {

constexpr int kTriesPerName = 16;    // a name swapped this often under the walk: give up
constexpr int kPassesPerDir = 16;    // a directory refilled this often: give up
constexpr size_t kDentsBytes = 8192; // one getdents64 buffer per open level
constexpr size_t kShownMax = 1024;   // an error message's path, at most (a deep tree's is long)

// The kernel's struct linux_dirent64; only its offsets are used.
struct Dirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[1];
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

struct Walk {
  RemoveTreeLimits limits;
  RemoveTreeReport* report;
  std::string* err;
  uint64_t seen = 0;
};

// A path for a message: its head and tail when it is very long.
std::string shorten(const std::string& p) {
  if (p.size() <= kShownMax) return p;
  return p.substr(0, kShownMax / 2) + "..." + p.substr(p.size() - kShownMax / 2);
}

bool fail(Walk& w, const std::string& msg) {
  *w.err = msg;
  return false;
}

bool fail_errno(Walk& w, const std::string& what, const std::string& shown, int e) {
  return fail(w, what + " " + shorten(shown) + ": " + std::strerror(e));
}

// A directory on another file system than its parent's, or the root of a
// bind mount (same device): a mount point, never entered.
bool is_mount_point(int fd, const struct stat& st, dev_t parent_dev) {
  if (st.st_dev != parent_dev) return true;
#ifdef STATX_ATTR_MOUNT_ROOT
  struct statx sx {};
  if (::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_TYPE, &sx) == 0 &&
      (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT))
    return true;
#endif
  return false;
}

bool remove_entry(int dir, dev_t dev, const char* name, int depth, const std::string& shown, Walk& w, bool* existed);

// Removes every entry of the directory fd (device dev, at `depth`), pass
// after pass until a pass finds none.
bool empty_dir(int fd, dev_t dev, int depth, const std::string& shown, Walk& w) {
  std::vector<char> buf(kDentsBytes);
  for (int pass = 0; pass < kPassesPerDir; pass++) {
    if (::lseek(fd, 0, SEEK_SET) < 0) return fail_errno(w, "rewind", shown, errno);
    bool any = false;
    for (;;) {
      const long n = ::syscall(SYS_getdents64, fd, buf.data(), buf.size());
      if (n < 0) return fail_errno(w, "read directory", shown, errno);
      if (n == 0) break;
      for (long off = 0; off < n;) {
        unsigned short reclen;
        std::memcpy(&reclen, buf.data() + off + offsetof(Dirent64, d_reclen), sizeof reclen);
        if (reclen == 0 || off + reclen > n) return fail(w, "read directory " + shorten(shown) + ": a malformed entry");
        const char* name = buf.data() + off + offsetof(Dirent64, d_name);
        off += reclen;
        if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) continue;
        any = true;
        if (++w.seen > w.limits.max_entries)
          return fail(w, "more than " + std::to_string(w.limits.max_entries) + " entries: stopped at " +
                             shorten(shown) + " (what was not removed stays)");
        bool sub_existed = false;
        if (!remove_entry(fd, dev, name, depth, shown + "/" + name, w, &sub_existed)) return false;
      }
    }
    if (!any) return true;
  }
  return fail(w, shorten(shown) + " keeps filling under the walk (a process still writes in it): gave up after " +
                     std::to_string(kPassesPerDir) + " passes");
}

// Removes NAME in dir (device dev) whatever it is. NAME is at `depth` (the
// tree's top at 0), its subdirectories at depth + 1. Gone already is fine.
bool remove_entry(int dir, dev_t dev, const char* name, int depth, const std::string& shown, Walk& w, bool* existed) {
  for (int t = 0; t < kTriesPerName; t++) {
    // Anything but a directory: the name itself goes (a symlink is not followed).
    if (::unlinkat(dir, name, 0) == 0) {
      *existed = true;
      w.report->removed++;
      return true;
    }
    if (errno == ENOENT) return true;
    if (errno != EISDIR) return fail_errno(w, "remove", shown, errno);
    *existed = true;
    Fd sub(::openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (sub.get() < 0) {
      if (errno == ELOOP || errno == ENOTDIR || errno == ENOENT) continue;  // swapped since: look again
      return fail_errno(w, "open", shown, errno);
    }
    struct stat st {};
    if (::fstat(sub.get(), &st) != 0) return fail_errno(w, "stat", shown, errno);
    if (is_mount_point(sub.get(), st, dev))
      return fail(w, shorten(shown) + " is a mount point: not entered, not removed (it and what holds it stay)");
    if (depth > w.limits.max_depth)
      return fail(w, shorten(shown) + ": more than " + std::to_string(w.limits.max_depth) +
                         " directories deep: stopped (what is below stays)");
    if (!empty_dir(sub.get(), st.st_dev, depth + 1, shown, w)) return false;
    sub.reset();
    if (::unlinkat(dir, name, AT_REMOVEDIR) == 0) {
      w.report->removed++;
      return true;
    }
    // Moved away (the pass over dir finds it where it went), or NAME is now
    // something else: a link, a file, a refilled directory. Look again.
    if (errno == ENOENT) return true;
    if (errno != ENOTDIR && errno != ENOTEMPTY && errno != EEXIST) return fail_errno(w, "remove directory", shown, errno);
  }
  return fail(w, shorten(shown) + " keeps changing under the walk (a process still writes in it): gave up after " +
                     std::to_string(kTriesPerName) + " tries");
}

bool valid_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

// PATH (absolute) opened without following anything (path_walk.h): an
// O_PATH fd; -1 with *missing when a component does not exist, else -1 with *err.
int open_dir_nofollow(const std::string& path, bool* missing, std::string* err) {
  *missing = false;
  if (path.empty() || path[0] != '/') {
    *err = "'" + shorten(path) + "' is not an absolute path";
    return -1;
  }
  const WalkResult w = moat::open_dir_nofollow(path);
  switch (w.error) {
    case WalkError::None: return w.fd;
    case WalkError::Missing: *missing = true; return -1;
    case WalkError::DotDot: *err = shorten(path) + ": '..' is refused (the path is walked without following anything)"; return -1;
    case WalkError::Link:
      *err = shorten(w.walked) + " is a symlink or not a directory (refused: the path is walked without following links)";
      return -1;
    default: *err = "open " + shorten(w.walked) + ": " + std::strerror(w.errno_value); return -1;
  }
}

}  // namespace

bool remove_tree_at(int parent_fd, const std::string& name, const std::string& shown, const RemoveTreeLimits& limits,
                    RemoveTreeReport* report, std::string* err) {
  *report = RemoveTreeReport{};
  if (!valid_name(name)) {
    *err = "remove " + shorten(shown) + ": '" + shorten(name) + "' is not one file name";
    return false;
  }
  struct stat pst {};
  if (::fstat(parent_fd, &pst) != 0) {
    *err = "stat the directory of " + shorten(shown) + ": " + std::strerror(errno);
    return false;
  }
  Walk w{limits, report, err};
  return remove_entry(parent_fd, pst.st_dev, name.c_str(), 0, shown, w, &report->existed);
}

bool remove_tree(const std::string& parent, const std::string& name, const RemoveTreeLimits& limits,
                 RemoveTreeReport* report, std::string* err) {
  *report = RemoveTreeReport{};
  const std::string shown = (parent == "/" ? "" : parent) + "/" + name;
  bool missing = false;
  std::string why;
  Fd dir(open_dir_nofollow(parent, &missing, &why));
  if (dir.get() < 0) {
    if (missing) return true;
    *err = "remove " + shorten(shown) + ": " + why;
    return false;
  }
  return remove_tree_at(dir.get(), name, shown, limits, report, err);
}

}  // namespace moat
