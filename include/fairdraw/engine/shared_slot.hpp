// A shared_ptr that threads load and replace concurrently: the engine's
// immutable snapshots (registry, segments, decks) are published through it.
//
// Why not std::atomic<std::shared_ptr>: libstdc++ 12 releases its internal
// lock bit with a relaxed store after a load, so a later store does not
// happen-after the load's read of the pointer (ThreadSanitizer reports it).
// This is the same design — a one-bit spin lock held only while a refcount is
// taken or two pointers are swapped — with acquire/release on both sides.
// Readers never wait for a writer's real work: writers build the new object
// first and hold the bit only for the swap.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <utility>

namespace fairdraw {

template <class T>
class SharedSlot {
 public:
  SharedSlot() = default;
  explicit SharedSlot(std::shared_ptr<T> value) : value_(std::move(value)) {}
  SharedSlot(const SharedSlot&) = delete;
  SharedSlot& operator=(const SharedSlot&) = delete;

  std::shared_ptr<T> load() const {
    lock();
    std::shared_ptr<T> copy = value_;
    unlock();
    return copy;
  }

  void store(std::shared_ptr<T> value) {
    lock();
    value_.swap(value);
    unlock();
    // The old value (now in `value`) is released here, outside the bit.
  }

 private:
  void lock() const {
    for (int spins = 0; busy_.exchange(true, std::memory_order_acquire); ++spins) {
      if (spins > 64) std::this_thread::yield();
    }
  }
  void unlock() const { busy_.store(false, std::memory_order_release); }

  mutable std::atomic<bool> busy_{false};
  std::shared_ptr<T> value_;
};

}  // namespace fairdraw
