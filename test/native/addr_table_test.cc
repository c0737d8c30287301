// addr_table_test.cc: moat::AddrTable against std::unordered_map, under
// ASan/UBSan. Random puts, erases and finds over a small key space (so
// erases hit runs of colliding entries and the probe wraps), growth from
// the initial size, and key 0 never stored. Prints "ok <ops>" and exits 0,
// or names the first difference and exits 1.
// Built and run by test/unit/addr-table.test.ts.
#include <cstdint>
#include <cstdio>
#include <random>
#include <unordered_map>

#include "addr_table.h"

using moat::AddrTable;

static int fail(const char* what, uint32_t key, long op) {
  fprintf(stderr, "FAIL %s: key %u at op %ld\n", what, key, op);
  return 1;
}

int main() {
  static int values[4096];
  AddrTable<int> t;
  std::unordered_map<uint32_t, int*> want;
  std::mt19937 rng(20261207);
  long ops = 0;
  // Key spaces: dense (consecutive addresses, as a /16's peers), and a
  // small one that keeps the table crowded with collisions.
  for (uint32_t space : {4096u, 300u, 40u}) {
    for (int i = 0; i < 200000; i++, ops++) {
      const uint32_t key = 0x0a4d0100u + rng() % space;
      int* v = &values[rng() % 4096];
      switch (rng() % 3) {
        case 0:
          t.put(key, v);
          want[key] = v;
          break;
        case 1:
          t.erase(key);
          want.erase(key);
          break;
        default: {
          auto it = want.find(key);
          if (t.find(key) != (it == want.end() ? nullptr : it->second)) return fail("find", key, ops);
        }
      }
      if (t.size() != want.size()) return fail("size", key, ops);
    }
    for (auto& kv : want)
      if (t.find(kv.first) != kv.second) return fail("find after", kv.first, ops);
    for (uint32_t k = 0; k < space; k++) t.erase(0x0a4d0100u + k);
    if (t.size() != 0) return fail("emptied", 0, ops);
    want.clear();
  }
  t.put(0, &values[0]);
  if (t.find(0) != nullptr || t.size() != 0) return fail("key 0", 0, ops);
  t.put(7, &values[1]);
  t.clear();
  if (t.find(7) != nullptr || t.size() != 0) return fail("clear", 7, ops);
  printf("ok %ld\n", ops);
  return 0;
}
