// router_control.cc: the Router's controlling side (router.h): it starts and
// stops the loop thread, hands rules, bindings and relisten requests over to
// it (rate limits too; router_loop.h's Pending, then a write to the control eventfd), and
// passes events and stats on. Nothing here touches a packet; the loop is
// router.cc's.
//
// Threads: any one controlling thread (the binding's JS thread). Syscalls:
// eventfd, write (the control eventfd), close; the thread's own are
// router.h's.
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "router.h"
#include "router_loop.h"

namespace moat {

Router::Router(RouterOptions opts)
    : opts_(std::move(opts)), pending_(new Pending()), loop_(Loop::create(opts_, pending_.get())) {}

Router::~Router() { stop(); }

bool Router::start(std::function<void()> wake, std::string* err) {
  if (running_) {
    *err = "router already running";
    return false;
  }
  control_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (control_fd_ < 0) {
    *err = std::string("eventfd: ") + strerror(errno);
    return false;
  }
  pending_->stop.store(false);
  loop_->attach(control_fd_, std::move(wake));

  struct Init {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    bool ok = false;
    std::string err;
  } init;
  Loop* loop = loop_.get();
  thread_ = std::thread([loop, &init] {
    pthread_setname_np(pthread_self(), "moat-router");  // top -H, ps -L, /proc/PID/task/*/comm
    std::string e;
    const bool ok = loop->init(&e);
    if (!ok) loop->teardown();
    {
      // Notify under the lock: start() may return (and destroy init) as soon
      // as it sees done.
      std::lock_guard<std::mutex> g(init.mu);
      init.done = true;
      init.ok = ok;
      init.err = e;
      init.cv.notify_one();
    }
    if (!ok) return;
    loop->run();
    loop->teardown();
  });
  bool ok;
  {
    std::unique_lock<std::mutex> g(init.mu);
    init.cv.wait(g, [&] { return init.done; });
    ok = init.ok;
    if (!ok) *err = init.err;
  }
  if (!ok) {
    thread_.join();
    close(control_fd_);
    control_fd_ = -1;
    loop_->attach(-1, nullptr);
    return false;
  }
  running_ = true;
  return true;
}

void Router::notify() {
  const uint64_t one = 1;
  if (control_fd_ >= 0) (void)!write(control_fd_, &one, sizeof one);
}

void Router::stop() {
  if (!running_) return;
  pending_->stop.store(true);
  notify();
  thread_.join();
  close(control_fd_);
  control_fd_ = -1;
  loop_->attach(-1, nullptr);
  running_ = false;
}

void Router::set_rules(std::vector<Rule> in, std::vector<Rule> out,
                       std::vector<int32_t> carry_in, std::vector<int32_t> carry_out, ConntrackConfig ct) {
  // Compiled here, in the caller's thread; the loop only swaps pointers.
  std::unique_ptr<RuleSet> rs(new RuleSet(std::move(in), std::move(out)));
  rs->carry_in = std::move(carry_in);
  rs->carry_out = std::move(carry_out);
  rs->ct = ct;
  if (!running_) {
    loop_->install_rules(std::move(rs));
    return;
  }
  {
    std::lock_guard<std::mutex> g(pending_->mu);
    if (pending_->rules) {
      // The loop has not taken the previous set yet: the caller's carry
      // indices refer to that set, so route them through its own carry.
      auto compose = [](std::vector<int32_t>& c, const std::vector<int32_t>& prev) {
        for (int32_t& x : c) x = (x >= 0 && size_t(x) < prev.size()) ? prev[x] : -1;
      };
      compose(rs->carry_in, pending_->rules->carry_in);
      compose(rs->carry_out, pending_->rules->carry_out);
    }
    pending_->rules = std::move(rs);
  }
  notify();
}

void Router::set_bindings(Bindings bindings) {
  if (!running_) {
    loop_->set_bindings(bindings);
    return;
  }
  {
    std::lock_guard<std::mutex> g(pending_->mu);
    pending_->bindings = std::move(bindings);
    pending_->have_bindings = true;
  }
  notify();
}

void Router::set_limits(std::vector<PeerLimit> limits) {
  if (!running_) {
    loop_->set_limits(limits);
    return;
  }
  {
    std::lock_guard<std::mutex> g(pending_->mu);
    pending_->limits.reset(new std::vector<PeerLimit>(std::move(limits)));
  }
  notify();
}

void Router::set_peer_rules(std::vector<PeerRuleSpec> sets) {
  // Compiled here, in the caller's thread; the loop only swaps pointers.
  std::unique_ptr<PeerRuleTable> t(new PeerRuleTable());
  for (PeerRuleSpec& s : sets) {
    std::unique_ptr<PeerRules> r(new PeerRules(s.key, s.addr, std::move(s.in), std::move(s.out)));
    r->carry_in = std::move(s.carry_in);
    r->carry_out = std::move(s.carry_out);
    t->add(std::move(r));
  }
  if (!running_) {
    loop_->install_peer_rules(std::move(t));
    return;
  }
  {
    std::lock_guard<std::mutex> g(pending_->mu);
    if (pending_->peer_rules) t->compose(*pending_->peer_rules);
    pending_->peer_rules = std::move(t);
  }
  notify();
}

bool Router::relisten(std::string* err) {
  if (!running_) {
    *err = "router is not running";
    return false;
  }
  std::unique_lock<std::mutex> g(pending_->mu);
  pending_->relisten = true;
  pending_->relisten_done = false;
  notify();
  if (!pending_->relisten_cv.wait_for(g, std::chrono::seconds(5), [&] { return pending_->relisten_done; })) {
    pending_->relisten = false;
    *err = "the router loop did not answer within 5 s";
    return false;
  }
  if (!pending_->relisten_ok) *err = pending_->relisten_err;
  return pending_->relisten_ok;
}

std::vector<RouterEvent> Router::take_events() { return loop_->take_events(); }

RouterStats Router::stats() const { return loop_->stats(); }

}  // namespace moat
