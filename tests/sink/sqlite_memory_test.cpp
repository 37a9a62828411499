// Tests of the slot allocator SQLite uses in place of lookaside: installed
// before any SQLite call of this test binary, so every sink test runs on it.
#include "fairdraw/sink/sqlite_memory.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace fairdraw {
namespace {

// At static initialization, before any test (or anything else) touches SQLite.
const bool kInstalled = install_sqlite_memory_slots();

// Inserts `rows` rows into a fresh in-memory database through one prepared
// statement and reads them back; returns how many it read.
int churn(int rows) {
  sqlite3* db = nullptr;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) return -1;
  sqlite3_exec(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, UNIQUE (name))", nullptr,
               nullptr, nullptr);
  sqlite3_stmt* insert = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO t (name) VALUES (?1)", -1, &insert, nullptr);
  for (int i = 0; i < rows; ++i) {
    const std::string name =
        "name-" + std::to_string(i) + std::string(static_cast<std::size_t>(i % 300), 'x');
    sqlite3_bind_text(insert, 1, name.c_str(), static_cast<int>(name.size()), SQLITE_TRANSIENT);
    sqlite3_step(insert);
    sqlite3_reset(insert);
  }
  sqlite3_finalize(insert);
  sqlite3_stmt* count = nullptr;
  int n = -1;
  if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM t WHERE name LIKE 'name-%'", -1, &count,
                         nullptr) == SQLITE_OK &&
      sqlite3_step(count) == SQLITE_ROW) {
    n = sqlite3_column_int(count, 0);
  }
  sqlite3_finalize(count);
  sqlite3_close(db);
  return n;
}

TEST(SqliteMemory, ServesSqliteFromRecycledSlots) {
  ASSERT_TRUE(kInstalled);
  EXPECT_TRUE(install_sqlite_memory_slots());  // a second call changes nothing
  // The first statements fill the free lists.
  churn(100);
  const SqliteMemoryStats before = sqlite_memory_stats();
  EXPECT_EQ(churn(2000), 2000);
  const SqliteMemoryStats after = sqlite_memory_stats();
  // Each INSERT takes a cursor per B-tree and a record buffer for each (6 here)
  // and frees them at its reset: 12,000 blocks, nearly all of them reused.
  EXPECT_LT(after.slots_made - before.slots_made, 600u);
}

TEST(SqliteMemory, BlocksKeepTheirBytesAcrossClassesAndSizes) {
  ASSERT_TRUE(kInstalled);
  auto pattern = [](int i) { return static_cast<unsigned char>(i * 7 + 13); };
  for (const int size : {1, 63, 64, 65, 500, 1024, 1025, 70000}) {
    auto* p = static_cast<unsigned char*>(sqlite3_malloc(size));
    ASSERT_NE(p, nullptr);
    EXPECT_GE(sqlite3_msize(p), static_cast<sqlite3_uint64>(size));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 16, 0u);
    for (int i = 0; i < size; ++i) p[i] = pattern(i);
    int have = size;
    for (const int next : {size + 1, size * 3 + 100, size / 2 + 1}) {
      auto* q = static_cast<unsigned char*>(sqlite3_realloc(p, next));
      ASSERT_NE(q, nullptr);
      EXPECT_GE(sqlite3_msize(q), static_cast<sqlite3_uint64>(next));
      for (int i = 0; i < std::min(have, next); ++i) {
        ASSERT_EQ(q[i], pattern(i)) << size << " -> " << next << " at " << i;
      }
      for (int i = 0; i < next; ++i) q[i] = pattern(i);
      p = q;
      have = next;
    }
    sqlite3_free(p);
  }
  sqlite3_free(nullptr);
}

TEST(SqliteMemory, ConnectionsOnManyThreadsAtOnce) {
  ASSERT_TRUE(kInstalled);
  std::vector<std::thread> threads;
  std::vector<int> read(4, 0);
  for (std::size_t t = 0; t < read.size(); ++t) {
    threads.emplace_back([&read, t] { read[t] = churn(1500); });
  }
  for (auto& thread : threads) thread.join();
  for (const int n : read) EXPECT_EQ(n, 1500);
}

}  // namespace
}  // namespace fairdraw
