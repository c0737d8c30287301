// addresses.cc: who may use which address (see addresses.h).
#include "addresses.h"

#include <algorithm>
#include <unordered_set>

#include "mono_clock.h"
#include "tun.h"

namespace moat {
namespace {

constexpr uint64_t kSecond = 1000000000ull;

bool bad_source(uint32_t a) {
  return a == 0 || a == 0xffffffffu || (a >> 28) == 0xe;  // 0.0.0.0, broadcast, 224/4
}

// A peer matches a binding by uid (-1: any) and, for a pid binding, by pid
// and start time; a peer whose start time is unknown (0) matches no pid
// binding.
bool matches(const Binding& b, const Peer& p) {
  if (b.uid < 0 && b.pid < 0) return false;  // a pure reservation
  if (b.uid >= 0 && uint32_t(b.uid) != p.uid) return false;
  if (b.pid >= 0 && (uint32_t(b.pid) != p.pid || p.start == 0 || b.start != p.start)) return false;
  return true;
}

}  // namespace

void AddressBook::set_bindings(const Bindings& b) {
  bind_of_runtime_.clear();
  addr_of_uid_.clear();
  bindings_of_addr_.clear();
  std::unordered_set<uint32_t> vassals;
  for (const Binding& x : b.list) {
    if (x.pid >= 0) bind_of_runtime_[{uint32_t(x.pid), x.start}] = x;
    else if (x.uid >= 0 && x.addr != 0) addr_of_uid_[uint32_t(x.uid)] = x.addr;
    if (x.addr != 0) bindings_of_addr_[x.addr].push_back(x);
    if (x.vassal != 0) vassals.insert(x.vassal);
  }
  // The emperor released the vassals it no longer names.
  for (auto it = addr_of_vassal_.begin(); it != addr_of_vassal_.end();) {
    if (vassals.count(it->first)) {
      ++it;
      continue;
    }
    vassal_of_addr_.erase(it->second);
    it = addr_of_vassal_.erase(it);
  }
  learn_ = b.learn;
}

// The tun's addresses are asked for last, and a refusal answered from the
// cache while it is at most a second old.
Drop AddressBook::refusal(const Peer& p, uint32_t src, uint64_t now) {
  if (bad_source(src)) return Drop::BadSource;
  if (now - gateway_at_ < kSecond && is_gateway_cached(src)) return Drop::Gateway;
  if (by_addr_.contains(src)) return Drop::Collision;
  if (!may_use(p, src)) return Drop::Unbound;
  uint32_t bound;
  if (!bound_address(p, &bound)) {  // a learn: only from the learnable network
    const Drop why = unlearnable(src);
    if (why != Drop::Count) return why;
  }
  if (is_gateway(src)) return Drop::Gateway;
  return Drop::Count;
}

bool AddressBook::bound_free(const Peer& p, uint32_t* a) {
  if (!bound_address(p, a)) return false;
  return !bad_source(*a) && !by_addr_.contains(*a) && may_use(p, *a) && !is_gateway(*a);
}

void AddressBook::take(Peer* p, uint32_t a) {
  by_addr_.put(a, p);
  const Binding* b = runtime_binding(*p);
  if (!b || b->vassal == 0) return;
  auto old = addr_of_vassal_.find(b->vassal);
  if (old != addr_of_vassal_.end() && old->second != a) vassal_of_addr_.erase(old->second);
  addr_of_vassal_[b->vassal] = a;
  vassal_of_addr_[a] = b->vassal;
}

void AddressBook::release(const Peer* p) {
  if (p->addr == 0) return;
  if (by_addr_.find(p->addr) == p) by_addr_.erase(p->addr);
}

// The binding naming p's runtime (its pid and start time), or null.
const Binding* AddressBook::runtime_binding(const Peer& p) const {
  if (p.start == 0) return nullptr;
  auto it = bind_of_runtime_.find({p.pid, p.start});
  return it != bind_of_runtime_.end() && matches(it->second, p) ? &it->second : nullptr;
}

// The one address p is bound to, if any: its runtime binding's, else its
// vassal's reservation, else its uid's.
bool AddressBook::bound_address(const Peer& p, uint32_t* a) const {
  if (const Binding* b = runtime_binding(p)) {
    if (b->addr != 0) {
      *a = b->addr;
      return true;
    }
    auto r = addr_of_vassal_.find(b->vassal);
    if (b->vassal != 0 && r != addr_of_vassal_.end()) {
      *a = r->second;
      return true;
    }
  }
  auto bu = addr_of_uid_.find(p.uid);
  if (bu == addr_of_uid_.end()) return false;
  *a = bu->second;
  return true;
}

bool AddressBook::may_use(const Peer& p, uint32_t a) const {
  uint32_t bound;
  if (bound_address(p, &bound) && bound != a) return false;
  auto v = vassal_of_addr_.find(a);
  if (v != vassal_of_addr_.end()) {
    const Binding* b = runtime_binding(p);
    if (!b || b->vassal != v->second) return false;  // reserved for another vassal
  }
  auto r = bindings_of_addr_.find(a);
  if (r == bindings_of_addr_.end()) return true;
  for (const Binding& b : r->second)
    if (matches(b, p)) return true;
  return false;
}

// Drop::Count if a may be learned: inside the learnable network, neither its
// network nor its broadcast address (a /31 or /32 has neither).
Drop AddressBook::unlearnable(uint32_t a) const {
  if (learn_.none) return Drop::Outside;
  if ((a & learn_.mask) != learn_.net) return Drop::Outside;
  if (learn_.mask != 0 && (~learn_.mask) > 1 && (a == learn_.net || a == (learn_.net | ~learn_.mask))) return Drop::BadSource;
  return Drop::Count;
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
