// BlockPool: fixed-size memory blocks in one free list shared by all threads,
// for objects made on one thread and freed on another on every request (Asio
// operations that carry work between threads, the API's pending draws). A
// per-thread cache runs dry on the thread that allocates while the one that
// frees overflows; malloc's own caches are per thread too. Requests larger than
// kBlock, and blocks beyond kKept, go to operator new/delete. A pool is never
// destroyed, so memory freed during static destruction still finds it.
#pragma once

#include <cstddef>
#include <mutex>
#include <new>
#include <vector>

namespace fairdraw {

template <class Tag, std::size_t kBlock, std::size_t kKept>
class BlockPool {
 public:
  static constexpr std::size_t block_size = kBlock;

  static void* allocate(std::size_t size) {
    if (size > kBlock) return ::operator new(size);
    BlockPool& pool = instance();
    {
      std::lock_guard lock(pool.mutex_);
      if (!pool.free_.empty()) {
        void* block = pool.free_.back();
        pool.free_.pop_back();
        return block;
      }
    }
    return ::operator new(kBlock);
  }

  static void deallocate(void* block, std::size_t size) noexcept {
    if (size <= kBlock) {
      BlockPool& pool = instance();
      std::lock_guard lock(pool.mutex_);
      if (pool.free_.size() < kKept) {
        pool.free_.push_back(block);  // capacity reserved: cannot throw
        return;
      }
    }
    ::operator delete(block);
  }

 private:
  BlockPool() { free_.reserve(kKept); }
  static BlockPool& instance() {
    static BlockPool* pool = new BlockPool;  // NOLINT(cppcoreguidelines-owning-memory): never deleted
    return *pool;
  }

  std::mutex mutex_;
  std::vector<void*> free_;
};

// A stateless allocator over a BlockPool (for Asio handlers, std::allocate_shared).
template <class T, class Pool>
struct BlockPoolAllocator {
  using value_type = T;
  template <class U>
  struct rebind {
    using other = BlockPoolAllocator<U, Pool>;
  };

  BlockPoolAllocator() noexcept = default;
  template <class U>
  BlockPoolAllocator(const BlockPoolAllocator<U, Pool>&) noexcept {}  // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) { return static_cast<T*>(Pool::allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { Pool::deallocate(p, n * sizeof(T)); }

  template <class U>
  bool operator==(const BlockPoolAllocator<U, Pool>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const BlockPoolAllocator<U, Pool>&) const noexcept {
    return false;
  }
};

}  // namespace fairdraw
