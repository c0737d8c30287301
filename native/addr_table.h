// addr_table.h: IPv4 address -> pointer, the map behind AddressBook::holder
// (one lookup per packet down). An open-addressing table with linear
// probing over one flat array of 16-byte entries.
//
// Why not std::unordered_map: its lookup is a division, a load from the
// bucket array and a load from a node elsewhere on the heap, each load
// depending on the one before. With 1,000 peers these are often cache
// misses (docs/scale.md). Here a lookup is a multiply and usually one load.
//
// Key 0 marks an empty entry (0.0.0.0 is never a peer address: addresses.h).
// The table doubles when it would be half full and never shrinks (its keys
// are peers' addresses: thousands at most). erase() shifts the entries
// behind back (no tombstones), so probes stay short after churn.
// Threads: none of its own; the router's loop thread only.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace moat {

template <class T>
class AddrTable {
 public:
  AddrTable() { clear(); }

  // The value at a, or null (a == 0 is never found).
  T* find(uint32_t a) const {
    if (a == 0) return nullptr;
    for (size_t i = home(a);; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == a) return e.value;
      if (e.key == 0) return nullptr;
    }
  }

  bool contains(uint32_t a) const { return find(a) != nullptr; }

  // a (non-zero) maps to value (non-null) from now on.
  void put(uint32_t a, T* value) {
    if (a == 0 || value == nullptr) return;
    if ((size_ + 1) * 2 > slots_.size()) grow();
    size_t i = home(a);
    while (slots_[i].key != 0 && slots_[i].key != a) i = (i + 1) & mask_;
    if (slots_[i].key == 0) size_++;
    slots_[i] = Entry{a, value};
  }

  // a maps to nothing from now on.
  void erase(uint32_t a) {
    if (a == 0) return;
    size_t i = home(a);
    while (slots_[i].key != a) {
      if (slots_[i].key == 0) return;
      i = (i + 1) & mask_;
    }
    // Backward shift: each later entry of the run that may live at i (its
    // home is not within (i, j]) moves there, and its old place is the next hole.
    for (size_t j = (i + 1) & mask_; slots_[j].key != 0; j = (j + 1) & mask_) {
      const size_t h = home(slots_[j].key);
      const bool stays = i < j ? (h > i && h <= j) : (h > i || h <= j);
      if (stays) continue;
      slots_[i] = slots_[j];
      i = j;
    }
    slots_[i] = Entry{};
    size_--;
  }

  void clear() {
    slots_.assign(kInitial, Entry{});
    mask_ = kInitial - 1;
    size_ = 0;
  }

  size_t size() const { return size_; }

 private:
  struct Entry {
    uint32_t key = 0;
    T* value = nullptr;
  };
  static constexpr size_t kInitial = 64;  // a power of two

  // Fibonacci hashing: a peer's addresses are often consecutive, and the
  // multiply spreads them over the table; the high bits index it.
  size_t home(uint32_t a) const { return size_t((uint64_t(a) * 0x9E3779B97F4A7C15ull) >> 32) & mask_; }

  void grow() {
    std::vector<Entry> old;
    old.swap(slots_);
    slots_.assign(old.size() * 2, Entry{});
    mask_ = slots_.size() - 1;
    size_ = 0;
    for (const Entry& e : old)
      if (e.key != 0) put(e.key, e.value);
  }

  std::vector<Entry> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace moat
