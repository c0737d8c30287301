// router_loop.h: the contract between the Router's two sides (router.h).
// The controlling side (router_control.cc: start, stop, set_rules,
// set_bindings, set_limits, relisten, any one controlling thread) and the loop
// (router.cc: one thread that owns the tun, the socket and the peers) meet
// only here: the controller hands things over in a Pending under its mutex
// and wakes the loop through the control eventfd; the loop takes them
// between two batches. Events and stats go the other way through the Loop's
// own locks. Syscalls: none here.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "chain.h"
#include "router.h"

namespace moat {

// What controlling threads hand to the loop (taken when the eventfd fires).
struct Router::Pending {
  std::mutex mu;
  std::unique_ptr<RuleSet> rules;  // a newer set replaces an untaken one
  bool have_bindings = false;
  Bindings bindings;
  std::unique_ptr<std::vector<PeerLimit>> limits;  // a newer set replaces an untaken one
  std::unique_ptr<PeerRuleTable> peer_rules;         // a newer table replaces an untaken one
  std::atomic<bool> stop{false};
  // relisten(): asked by the controller, answered by the loop.
  std::condition_variable relisten_cv;
  bool relisten = false, relisten_done = false, relisten_ok = false;
  std::string relisten_err;
};

// The loop as the controlling side drives it (implemented in router.cc).
struct Router::Loop {
  // One per Router; pending outlives it.
  static std::unique_ptr<Loop> create(const RouterOptions& opts, Pending* pending);
  virtual ~Loop() = default;

  // Before the thread starts and after it ended: the control eventfd the
  // loop watches, and what it calls when events are waiting (-1, null: none).
  virtual void attach(int control_fd, std::function<void()> wake) = 0;
  // On the loop thread: init() enters the netns and opens the tun, the
  // socket and epoll (false with *err); run() until pending->stop;
  // teardown() closes everything (also after a failed init()).
  virtual bool init(std::string* err) = 0;
  virtual void run() = 0;
  virtual void teardown() = 0;

  // While the loop is not running (else through Pending).
  virtual void install_rules(std::unique_ptr<RuleSet> rs) = 0;
  virtual void set_bindings(const Bindings& bindings) = 0;
  virtual void set_limits(const std::vector<PeerLimit>& limits) = 0;
  virtual void install_peer_rules(std::unique_ptr<PeerRuleTable> t) = 0;

  // Any thread.
  virtual std::vector<RouterEvent> take_events() = 0;
  virtual RouterStats stats() const = 0;
};

}  // namespace moat
