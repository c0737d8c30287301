// remove_tree.h: root removes a directory tree a tenant can write (a retired
// vassal's host directory) without ever following a link.
//
// A recursive remove by path (rm -rf, fs.rmSync) looks at a name, then
// uses it: a tenant process still alive swaps a subdirectory for a symlink
// in between and root empties the directory the link points to. Here every
// step goes through an fd and names only one entry of a directory held open:
// unlinkat() for anything that is not a directory (a symlink is removed, never
// followed); a directory is opened with openat(O_DIRECTORY|O_NOFOLLOW) (a
// symlink swapped in fails to open and is unlinked on the next try), emptied
// through that fd, then removed with unlinkat(AT_REMOVEDIR). A name that
// changes under the walk is tried again a bounded number of times; what the
// tenant renames elsewhere inside the tree is found by the next pass over its
// directory. Root's operations stay inside the tree opened, whatever is swapped.
//
// Limits (reported, never a crash): a depth bound (one open fd and one 8 KiB
// buffer per level), an entry bound (entries seen, passes included), a bound
// on passes and on retries per name. A mount point (another st_dev than its
// parent, or the root of a bind mount, STATX_ATTR_MOUNT_ROOT) is neither
// entered nor removed. On any error the walk stops: what was not removed stays.
// Threads: any (no global state). Syscalls: open/openat (O_PATH, O_DIRECTORY,
// O_NOFOLLOW), fstat, statx, getdents64, lseek, unlinkat, close.
#pragma once
#include <cstdint>
#include <string>

namespace moat {

struct RemoveTreeLimits {
  int max_depth;             // directories below the one removed: 1 = its direct subdirectories
  uint64_t max_entries;      // directory entries looked at, in all
};

struct RemoveTreeReport {
  bool existed = false;      // something was at NAME
  uint64_t removed = 0;      // entries removed (NAME itself included)
};

// Removes NAME (a single component: no '/', not '.' or '..') inside the
// directory parent_fd (O_PATH is enough), whatever it is. Nothing there is
// fine (existed = false). False with *err naming the path on failure
// (display: shown under the name `shown`, e.g. the parent's path + "/" + NAME).
bool remove_tree_at(int parent_fd, const std::string& name, const std::string& shown, const RemoveTreeLimits& limits,
                    RemoveTreeReport* report, std::string* err);

// The same for an absolute PARENT path: opened one component at a time from
// / with O_NOFOLLOW (a symlink or '..' on the way is refused, not followed).
// A missing PARENT means nothing to remove (existed = false).
bool remove_tree(const std::string& parent, const std::string& name, const RemoveTreeLimits& limits,
                 RemoveTreeReport* report, std::string* err);

}  // namespace moat
