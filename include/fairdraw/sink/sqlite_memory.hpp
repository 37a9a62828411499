// SQLite's small allocations from recycled slots instead of malloc, in place of
// the lookaside allocator Debian's libsqlite3 is built without.
#pragma once

#include <cstdint>

namespace fairdraw {

// Installs the slot allocator as SQLite's allocator (SQLITE_CONFIG_MALLOC) and
// turns SQLite's memory statistics off (SQLITE_CONFIG_MEMSTATUS). SQLite
// accepts that only before its first use in the process: called again, or
// after SQLite was used, it changes nothing. Returns whether the slots are
// SQLite's allocator now. Only the first call does anything (std::call_once),
// and like sqlite3_config it must not overlap another thread's SQLite calls:
// SqliteSink::open calls it first thing, at start-up, before any thread of
// the sink exists.
bool install_sqlite_memory_slots();

struct SqliteMemoryStats {
  std::uint64_t slots_made = 0;         // new slots from malloc (the rest were reused)
  std::uint64_t large_allocations = 0;  // over the largest class: plain malloc
};

// Totals since the slots were installed (all zero if they were not).
SqliteMemoryStats sqlite_memory_stats();

}  // namespace fairdraw
