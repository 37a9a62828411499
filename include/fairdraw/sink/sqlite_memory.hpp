// SQLite's small allocations from recycled slots instead of malloc, in place of
// the lookaside allocator Debian's libsqlite3 is built without.
#pragma once

#include <cstdint>

namespace fairdraw {

// Installs the slot allocator as SQLite's allocator (SQLITE_CONFIG_MALLOC).
// SQLite accepts that only before its first use in the process: called again,
// or after SQLite was used, it changes nothing. Returns whether the slots are
// SQLite's allocator now. Thread-safe; SqliteSink::open calls it first thing.
bool install_sqlite_memory_slots();

struct SqliteMemoryStats {
  std::uint64_t slots_made = 0;         // new slots from malloc (the rest were reused)
  std::uint64_t large_allocations = 0;  // over the largest class: plain malloc
};

// Totals since the slots were installed (all zero if they were not).
SqliteMemoryStats sqlite_memory_stats();

}  // namespace fairdraw
