// main.cc: moat-vassal, the launcher of one vassal (docs/runtime-protocol.md).
//
// Job: read the vassal's set-up lines from the control channel (fd 3, a unix
// stream socket from the emperor) until "start", unshare the configured
// namespaces, fork the runtime (pid 1 of the new pid namespace when `pid` is
// among them), report `pid N` (the runtime's pid as the host sees it), then
// wait: SIGTERM, SIGINT, SIGHUP and SIGQUIT are forwarded to the runtime, and
// the launcher exits with the runtime's exit code (128 + N if a signal N
// killed it). The launcher keeps the host's pid namespace (unshare moves only
// its children there) and closes its copy of the channel after `pid`.
//
// Why unshare + fork and not clone(): glibc's fork() keeps the child's
// thread bookkeeping right, which a raw clone() does not, and the runtime
// starts a thread (the device).
//
// Limits: kMaxConfigLines set-up lines of kMaxLine bytes; an unknown keyword,
// a malformed value or a too long line before "start" is `error ...`, exit 2.
//
// Syscalls: fcntl, read, write, open (cgroup.procs), unshare, fork, pipe2, prctl(PR_SET_PDEATHSIG),
// sigprocmask, sigaction, sigwaitinfo, kill, waitpid, close.
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "channel.h"
#include "runtime.h"

using namespace moat::vassal;

namespace {

int usage_error(const std::string& msg) {
  emit("error", msg);
  fprintf(stderr, "moat-vassal: %s\n", msg.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "--device-options") == 0) {
    // The device lines this runtime takes and their bounds, for the option
    // table's unit test: "KEYWORD on|off" for each switch, then "KEYWORD LO HI".
    for (size_t i = 0; i < kDeviceSwitchCount; i++) printf("%s on|off\n", kDeviceSwitches[i].keyword);
    for (size_t i = 0; i < kDeviceLineCount; i++)
      printf("%s %lld %lld\n", kDeviceLines[i].keyword, (long long)kDeviceLines[i].lo, (long long)kDeviceLines[i].hi);
    return 0;
  }
  if (argc > 1) {
    fprintf(stderr,
            "usage: %s [--device-options]\n"
            "The vassal runtime of moat's emperor: it reads its config from fd 3 (a unix\n"
            "stream socket) and reports there; see docs/runtime-protocol.md.\n",
            argv[0]);
    return 2;
  }
  int fl = fcntl(kChannelFd, F_GETFL);
  if (fl < 0) {
    fprintf(stderr, "moat-vassal: fd 3 is not open: it must be the control channel (docs/runtime-protocol.md)\n");
    return 2;
  }
  fcntl(kChannelFd, F_SETFL, fl & ~O_NONBLOCK);
  fcntl(kChannelFd, F_SETFD, FD_CLOEXEC);

  // Writes to a closed channel must fail with EPIPE, not kill.
  struct sigaction ign;
  memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, nullptr);

  LineReader reader(kChannelFd);
  Config cfg;
  size_t lines = 0;
  for (bool started = false; !started;) {
    std::string line, k, v, err;
    LineReader::Result r = reader.next(&line);
    if (r == LineReader::Result::NeedMore) {
      r = reader.fill();
      if (r == LineReader::Result::Error) return usage_error(std::string("reading the channel: ") + strerror(errno));
      continue;
    }
    if (r == LineReader::Result::Eof) return usage_error("the channel closed before 'start'");
    if (r == LineReader::Result::TooLong) return usage_error("a set-up line is longer than 65536 bytes");
    if (++lines > kMaxConfigLines) return usage_error("more than 4096 set-up lines");
    split_line(line, &k, &v);
    if (k == "start") {
      started = true;
    } else if (!cfg.apply(k, v, &err)) {
      return usage_error(err);
    }
  }
  std::string err;
  if (!cfg.check(&err)) return usage_error(err);

  // Blocked before fork so the runtime (and its device thread) inherit the
  // mask and read them from a signalfd; the launcher waits for them here.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaddset(&set, s);
  sigprocmask(SIG_BLOCK, &set, nullptr);

  // Into the vassal's cgroups first: the runtime and all it starts are in them.
  for (const std::string& cg : cfg.cgroups) {
    const std::string procs = cg + "/cgroup.procs";
    int fd = open(procs.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    const std::string pid = std::to_string(getpid());
    if (fd < 0 || write(fd, pid.data(), pid.size()) != ssize_t(pid.size())) {
      emit("error", "join cgroup " + cg + ": " + strerror(errno));
      return 1;
    }
    close(fd);
  }
  // The vassal before the emperor and the router when the host runs out of
  // memory (its processes inherit this; the emperor sets itself -900).
  if (!cfg.cgroups.empty()) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t ignored = write(fd, "500", 3);
      (void)ignored;
      close(fd);
    }
  }
  if (cfg.clone_flags != 0 && unshare(cfg.clone_flags) != 0) {
    emit("error", std::string("unshare: ") + strerror(errno));
    return 1;
  }
  int sync[2];
  if (pipe2(sync, O_CLOEXEC) != 0) {
    emit("error", std::string("pipe2: ") + strerror(errno));
    return 1;
  }
  pid_t child = fork();
  if (child < 0) {
    emit("error", std::string("fork: ") + strerror(errno));
    return 1;
  }
  if (child == 0) {
    close(sync[1]);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    char go = 0;
    ssize_t n;
    do {
      n = read(sync[0], &go, 1);
    } while (n < 0 && errno == EINTR);
    close(sync[0]);
    if (n != 1) _exit(1);  // the launcher died before `pid`
    return run_runtime(cfg, reader);
  }
  close(sync[0]);
  emit("pid", std::to_string(child));
  ssize_t ignored = write(sync[1], "g", 1);
  (void)ignored;
  close(sync[1]);
  close(kChannelFd);

  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    if (sig < 0) continue;
    if (sig == SIGCHLD) {
      int st;
      pid_t got = waitpid(child, &st, WNOHANG);
      if (got == child) {
        if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
        return WEXITSTATUS(st);
      }
      continue;
    }
    kill(child, sig);
  }
}
