// SQLite's allocator: small blocks from per-size-class free lists of recycled
// slots, larger ones from malloc (see sqlite_memory.hpp).
//
// Why: Debian's libsqlite3 is built with SQLITE_OMIT_LOOKASIDE, so every VDBE
// cursor and record buffer is a malloc, and a statement frees them all at its
// reset: an INSERT costs a dozen malloc/free pairs however few rows it carries
// (one row per commit at a low rate). The slots play lookaside's part for every
// connection: after the first few statements those blocks come back from a
// free list.
//
// Each block has a 16-byte header (keeping malloc's 16-byte alignment) holding
// its size class, or for a block past the largest class its size. Free slots
// wait in per-thread lists, as in glibc's tcache but deeper (tcache keeps 7
// blocks of a size, fewer than one INSERT frees at once): no lock, no atomic.
// A slot freed on another thread than the one that took it joins that
// thread's list; the slots are plain malloc'ed blocks, any thread may keep or
// free them. A list keeps at most kMaxFree slots, beyond which a freed slot
// goes back to malloc; a thread's lists are freed when it exits.
#include "fairdraw/sink/sqlite_memory.hpp"

#include <sqlite3.h>

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace fairdraw {
namespace {

constexpr std::size_t kHeader = 16;
constexpr std::array<std::size_t, 5> kClassBytes{64, 128, 256, 512, 1024};  // usable bytes
static_assert(kClassBytes.front() == 64 && kClassBytes.back() == 64 << (kClassBytes.size() - 1));
constexpr std::size_t kLargest = kClassBytes.back();
constexpr std::size_t kMaxFree = 256;  // free slots kept per class and thread

struct FreeSlot {
  FreeSlot* next;
};

// One thread's free slots. Destroyed at the thread's exit (freeing them); a
// later SQLite call on that thread gets plain malloc and free.
struct ThreadSlots {
  std::array<FreeSlot*, kClassBytes.size()> free{};
  std::array<std::size_t, kClassBytes.size()> count{};

  ThreadSlots() = default;
  ThreadSlots(const ThreadSlots&) = delete;
  ThreadSlots& operator=(const ThreadSlots&) = delete;
  ~ThreadSlots();
};

// Trivially destructible, so still readable while the thread's other
// thread_locals are destroyed.
thread_local ThreadSlots* this_thread_slots = nullptr;
thread_local bool this_thread_exited = false;

ThreadSlots::~ThreadSlots() {
  this_thread_slots = nullptr;
  this_thread_exited = true;
  for (FreeSlot* slot : free) {
    while (slot != nullptr) {
      FreeSlot* next = slot->next;
      std::free(slot);
      slot = next;
    }
  }
}

ThreadSlots* thread_slots() {
  if (this_thread_slots != nullptr || this_thread_exited) return this_thread_slots;
  static thread_local ThreadSlots slots;
  this_thread_slots = &slots;
  return this_thread_slots;
}

std::atomic<std::uint64_t> slots_made{0};
std::atomic<std::uint64_t> large_allocations{0};
std::atomic<bool> installed{false};

// The header's word: a class index below kClassBytes.size(), else the size of
// a plain malloc'ed block (always more than kLargest).
std::uint64_t& tag_of(void* block) { return *static_cast<std::uint64_t*>(block); }

void* user_of(void* block) { return static_cast<unsigned char*>(block) + kHeader; }
void* block_of(void* user) { return static_cast<unsigned char*>(user) - kHeader; }

// The smallest class that holds `bytes` (the classes are the powers of two
// from 64), or kClassBytes.size() when none does.
std::size_t class_for(std::size_t bytes) {
  if (bytes > kLargest) return kClassBytes.size();
  const int width = std::bit_width(bytes <= 64 ? std::size_t{63} : bytes - 1);
  return static_cast<std::size_t>(width - 6);
}

void* slot_malloc(int n) {
  if (n <= 0) return nullptr;
  const auto bytes = static_cast<std::size_t>(n);
  const std::size_t c = class_for(bytes);
  if (c == kClassBytes.size()) {
    void* block = std::malloc(kHeader + bytes);
    if (block == nullptr) return nullptr;
    tag_of(block) = bytes;
    large_allocations.fetch_add(1, std::memory_order_relaxed);
    return user_of(block);
  }
  void* block = nullptr;
  if (ThreadSlots* slots = thread_slots(); slots != nullptr && slots->free[c] != nullptr) {
    FreeSlot* slot = slots->free[c];
    slots->free[c] = slot->next;
    --slots->count[c];
    block = slot;
  } else {
    block = std::malloc(kHeader + kClassBytes[c]);
    if (block == nullptr) return nullptr;
    slots_made.fetch_add(1, std::memory_order_relaxed);
  }
  tag_of(block) = c;
  return user_of(block);
}

void slot_free(void* user) {
  if (user == nullptr) return;
  void* block = block_of(user);
  const std::uint64_t tag = tag_of(block);
  if (tag < kClassBytes.size()) {
    ThreadSlots* slots = thread_slots();
    if (slots != nullptr && slots->count[tag] < kMaxFree) {
      auto* slot = static_cast<FreeSlot*>(block);
      slot->next = slots->free[tag];
      slots->free[tag] = slot;
      ++slots->count[tag];
      return;
    }
  }
  std::free(block);
}

int slot_size(void* user) {
  if (user == nullptr) return 0;
  const std::uint64_t tag = tag_of(block_of(user));
  return static_cast<int>(tag < kClassBytes.size() ? kClassBytes[tag] : tag);
}

void* slot_realloc(void* user, int n) {
  if (user == nullptr) return slot_malloc(n);
  if (n <= 0) {
    slot_free(user);
    return nullptr;
  }
  const auto bytes = static_cast<std::size_t>(n);
  void* block = block_of(user);
  const std::uint64_t tag = tag_of(block);
  if (tag >= kClassBytes.size() && bytes > kLargest) {
    void* grown = std::realloc(block, kHeader + bytes);
    if (grown == nullptr) return nullptr;
    tag_of(grown) = bytes;
    return user_of(grown);
  }
  const auto have = static_cast<std::size_t>(slot_size(user));
  if (tag < kClassBytes.size() && bytes <= have && class_for(bytes) == tag) return user;
  void* moved = slot_malloc(n);
  if (moved == nullptr) return nullptr;
  std::memcpy(moved, user, have < bytes ? have : bytes);
  slot_free(user);
  return moved;
}

int slot_roundup(int n) {
  if (n <= 0) return n;
  const std::size_t c = class_for(static_cast<std::size_t>(n));
  if (c < kClassBytes.size()) return static_cast<int>(kClassBytes[c]);
  return (n + 7) & ~7;
}

int slot_init(void* /*unused*/) { return SQLITE_OK; }
void slot_shutdown(void* /*unused*/) {}

}  // namespace

bool install_sqlite_memory_slots() {
  static std::once_flag once;
  std::call_once(once, [] {
    sqlite3_mem_methods methods{slot_malloc,  slot_free, slot_realloc,  slot_size,
                                slot_roundup, slot_init, slot_shutdown, nullptr};
    // SQLITE_MISUSE once SQLite has been initialized in this process: then
    // its own allocator stays, and so does everything it allocated.
    const bool slots = sqlite3_config(SQLITE_CONFIG_MALLOC, &methods) == SQLITE_OK;
    // No memory statistics (nothing here reads sqlite3_memory_used() or sets a
    // heap limit): with them SQLite takes a global mutex around every
    // allocation and free to count it, which cost as much as the slots save.
    if (slots) sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    installed.store(slots, std::memory_order_release);
  });
  return installed.load(std::memory_order_acquire);
}

SqliteMemoryStats sqlite_memory_stats() {
  SqliteMemoryStats s;
  s.slots_made = slots_made.load(std::memory_order_relaxed);
  s.large_allocations = large_allocations.load(std::memory_order_relaxed);
  return s;
}

}  // namespace fairdraw
