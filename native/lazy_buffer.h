// lazy_buffer.h: a byte buffer whose memory is resident only where it is used.
//
// Why: std::vector<uint8_t>::resize writes a zero to every byte, so a
// device's outbound queue, input buffer and read buffers (about 450 KB with
// the defaults) were resident in every idle vassal. new uint8_t[n] leaves
// the bytes unwritten: the kernel maps a page when the data path first
// writes to it (a queue that never fills past 4 KB costs 4 KB). Callers
// only read bytes they wrote.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace moat {

class LazyBuffer {
 public:
  // Drops the old contents; the new bytes are unwritten.
  void resize(size_t n) {
    p_.reset(new uint8_t[n]);
    n_ = n;
  }
  uint8_t* data() { return p_.get(); }
  const uint8_t* data() const { return p_.get(); }
  size_t size() const { return n_; }

 private:
  std::unique_ptr<uint8_t[]> p_;
  size_t n_ = 0;
};

}  // namespace moat
