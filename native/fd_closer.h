// fd_closer.h: closes fds on a thread of its own, for the router's loop.
//
// Closing the last reference to a tun device unregisters the device, and
// that waits for RCU grace periods: 36 ms a device on the test VM. The
// router holds the last reference to a vassal's tun whenever the vassal's
// runtime went first (a vassal stopping, crashing, or a peer that closes its
// copy right after handing it over), so closing it on the loop would stall
// every other vassal's packets that long, per vassal. The loop hands such
// fds here instead. The thread starts with the first fd; it is detached and
// shares the queue, so a closer destroyed with fds still queued neither
// blocks its owner nor loses them (process exit closes what is left).
// Threads: close_later() from one owner thread; one closing thread.
// Syscalls: close (on the closing thread).
#pragma once
#include <pthread.h>
#include <unistd.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace moat {

class FdCloser {
 public:
  FdCloser() : s_(std::make_shared<State>()) {}
  ~FdCloser() {
    {
      std::lock_guard<std::mutex> g(s_->mu);
      s_->stop = true;
    }
    s_->cv.notify_one();
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

  void close_later(int fd) {
    if (fd < 0) return;
    {
      std::lock_guard<std::mutex> g(s_->mu);
      s_->queue.push_back(fd);
    }
    if (!started_) {
      started_ = true;
      try {
        std::thread(run, s_).detach();
      } catch (const std::system_error&) {
        started_ = false;  // no thread to be had: close here, slow but not lost
        std::vector<int> fds;
        {
          std::lock_guard<std::mutex> g(s_->mu);
          fds.swap(s_->queue);
        }
        for (int f : fds) close(f);
        return;
      }
    }
    s_->cv.notify_one();
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<int> queue;
    bool stop = false;
  };

  static void run(std::shared_ptr<State> s) {
    pthread_setname_np(pthread_self(), "moat-closer");
    std::vector<int> fds;
    for (;;) {
      {
        std::unique_lock<std::mutex> g(s->mu);
        s->cv.wait(g, [&] { return s->stop || !s->queue.empty(); });
        if (s->queue.empty()) return;  // stopped, nothing left
        fds.swap(s->queue);
      }
      for (int f : fds) close(f);
      fds.clear();
    }
  }

  std::shared_ptr<State> s_;
  bool started_ = false;
};

}  // namespace moat
