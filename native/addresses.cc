// addresses.cc: who may use which address (see addresses.h).
#include "addresses.h"

#include <algorithm>

#include "mono_clock.h"
#include "tun.h"

namespace moat {
namespace {

constexpr uint64_t kSecond = 1000000000ull;

bool bad_source(uint32_t a) {
  return a == 0 || a == 0xffffffffu || (a >> 28) == 0xe;  // 0.0.0.0, broadcast, 224/4
}

bool matches(const Binding& b, const Peer& p) {
  if (b.uid < 0 && b.pid < 0) return false;  // a pure reservation
  return (b.uid < 0 || uint32_t(b.uid) == p.uid) && (b.pid < 0 || uint32_t(b.pid) == p.pid);
}

}  // namespace

void AddressBook::set_bindings(const std::vector<Binding>& list) {
  bind_of_pid_.clear();
  addr_of_uid_.clear();
  bindings_of_addr_.clear();
  for (const Binding& b : list) {
    if (b.pid >= 0) bind_of_pid_[uint32_t(b.pid)] = b;
    else if (b.uid >= 0) addr_of_uid_[uint32_t(b.uid)] = b.addr;
    bindings_of_addr_[b.addr].push_back(b);
  }
}

// The tun's addresses are asked for last, and a refusal answered from the
// cache while it is at most a second old.
Drop AddressBook::refusal(const Peer& p, uint32_t src, uint64_t now) {
  if (bad_source(src)) return Drop::BadSource;
  if (now - gateway_at_ < kSecond && is_gateway_cached(src)) return Drop::Gateway;
  if (by_addr_.count(src)) return Drop::Collision;
  if (!may_use(p, src)) return Drop::Unbound;
  if (is_gateway(src)) return Drop::Gateway;
  return Drop::Count;
}

bool AddressBook::bound_free(const Peer& p, uint32_t* a) {
  if (!bound_address(p, a)) return false;
  return !bad_source(*a) && !by_addr_.count(*a) && may_use(p, *a) && !is_gateway(*a);
}

void AddressBook::release(const Peer* p) {
  if (p->addr == 0) return;
  auto it = by_addr_.find(p->addr);
  if (it != by_addr_.end() && it->second == p) by_addr_.erase(it);
}

// The one address p is bound to, if any (a pid binding first, then its uid's).
bool AddressBook::bound_address(const Peer& p, uint32_t* a) const {
  auto bp = bind_of_pid_.find(p.pid);
  if (bp != bind_of_pid_.end() && matches(bp->second, p)) {
    *a = bp->second.addr;
    return true;
  }
  auto bu = addr_of_uid_.find(p.uid);
  if (bu == addr_of_uid_.end()) return false;
  *a = bu->second;
  return true;
}

bool AddressBook::may_use(const Peer& p, uint32_t a) const {
  uint32_t bound;
  if (bound_address(p, &bound) && bound != a) return false;
  auto r = bindings_of_addr_.find(a);
  if (r == bindings_of_addr_.end()) return true;
  for (const Binding& b : r->second)
    if (matches(b, p)) return true;
  return false;
}

bool AddressBook::is_gateway_cached(uint32_t a) const {
  return std::find(gateway_.begin(), gateway_.end(), a) != gateway_.end();
}

// Asks the kernel (a learn is rare; refusals hit the cache above).
bool AddressBook::is_gateway(uint32_t a) {
  gateway_ = interface_addresses(tun_name_);
  gateway_at_ = mono_ns();
  return is_gateway_cached(a);
}

}  // namespace moat
