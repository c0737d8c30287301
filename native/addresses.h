// addresses.h: which peer holds which IPv4 address, and which peer may take
// one. A peer gets its address from a binding at once (router.h's Binding:
// by pid and start time first, then by uid; a vassal's reservation), or
// learns it from the source of its first packet. Refused, with the drop
// reason: 0.0.0.0, broadcast and multicast, and the learnable network's own
// network and broadcast addresses (bad_source); an address another live
// peer holds (collision: unlike uWSGI, the holder keeps it); an address
// other than the peer's binding, one bound to other peers or reserved for
// another vassal (unbound); a learned address outside the learnable network,
// or any when nothing is learnable (outside_network); an address of the
// router's own tun device (gateway).
//
// Reservations: the address a vassal's peer takes stays the vassal's
// (Binding::vassal) after the peer disconnects, until no binding names the
// vassal any more. A peer matching no vassal binding frees its address when
// it goes (nobody could release it otherwise).
//
// Threads: the router's loop thread only (Router::set_bindings hands the
// bindings over between two batches). Limits: none beyond the bindings'
// count. Cost: holder() is one hash lookup per packet down; everything else
// runs only for a peer without an address (its first packets) or at accept,
// so a peer that holds its address costs nothing here.
// Syscalls: getifaddrs (netlink, tun.h's interface_addresses), only when
// everything else agrees to a learn, so refusals cost no syscall (a refused
// gateway address is answered from a cache at most a second old).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "addr_table.h"
#include "drops.h"
#include "peer.h"
#include "router.h"

namespace moat {

class AddressBook {
 public:
  explicit AddressBook(std::string tun_name) : tun_name_(std::move(tun_name)) {}

  // The peer holding a, or null.
  Peer* holder(uint32_t a) const {
    return by_addr_.find(a);
  }

  // New bindings and learnable network govern from now on; peers keep the
  // addresses they hold. Reservations of vassals no binding names end.
  void set_bindings(const Bindings& b);

  // Drop::Count if p may take src as its address now (monotonic ns), else
  // why not.
  Drop refusal(const Peer& p, uint32_t src, uint64_t now);
  // The address p's binding (or its vassal's reservation) gives it, if p
  // may take it now (free, allowed, not the gateway's).
  bool bound_free(const Peer& p, uint32_t* a);

  // p holds a from now on (the caller set p->addr); a vassal's peer
  // reserves it for its vassal.
  void take(Peer* p, uint32_t a);
  // p (closing) holds its address no more (a vassal's reservation stays).
  void release(const Peer* p);
  void clear() { by_addr_.clear(); }

  // The tun's first address as last asked, or 0 (the source of our hello).
  uint32_t gateway() const { return gateway_.empty() ? 0 : gateway_[0]; }

 private:
  const Binding* runtime_binding(const Peer& p) const;
  bool bound_address(const Peer& p, uint32_t* a) const;
  bool may_use(const Peer& p, uint32_t a) const;
  Drop unlearnable(uint32_t a) const;
  bool is_gateway_cached(uint32_t a) const;
  bool is_gateway(uint32_t a);  // asks the kernel

  std::string tun_name_;
  AddrTable<Peer> by_addr_;  // flat: holder() runs per packet
  // Bindings: by (pid, start time), by uid (pid -1), and every binding by
  // address (addr 0 excluded).
  std::map<std::pair<uint32_t, uint64_t>, Binding> bind_of_runtime_;
  std::unordered_map<uint32_t, uint32_t> addr_of_uid_;
  std::unordered_map<uint32_t, std::vector<Binding>> bindings_of_addr_;
  // Reservations: the address each vassal took, and the reverse.
  std::unordered_map<uint32_t, uint32_t> vassal_of_addr_;
  std::unordered_map<uint32_t, uint32_t> addr_of_vassal_;
  LearnNet learn_;
  std::vector<uint32_t> gateway_;  // the tun's own addresses, cached
  uint64_t gateway_at_ = 0;
};

}  // namespace moat
