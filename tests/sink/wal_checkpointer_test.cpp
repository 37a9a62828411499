// Tests of WalCheckpointer: the WAL goes back into the file beside a writer
// that keeps committing, starts again from its beginning, and stays bounded
// even when the background thread never gets a pass done.
#include "fairdraw/sink/wal_checkpointer.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "support/temp_dir.hpp"

namespace fairdraw {
namespace {

using namespace std::chrono_literals;

// The database file in a fresh directory.
struct TempFile {
  test::TempDir dir;
  std::string path() const { return dir.file("fd.db"); }
};

// A writer connection like the sink's: WAL, a table, one row per commit
// (each commit adds a few WAL frames: the table leaf, its index leaf).
class Writer {
 public:
  explicit Writer(const std::string& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                              nullptr),
              SQLITE_OK);
    exec("PRAGMA journal_mode = WAL");
    exec("PRAGMA synchronous = NORMAL");  // the test is about pages, not fsync latency
    exec("CREATE TABLE rows (id INTEGER PRIMARY KEY, payload TEXT)");
    exec("CREATE INDEX rows_by_payload ON rows (payload)");
    EXPECT_EQ(sqlite3_prepare_v2(db_, "INSERT INTO rows (payload) VALUES (?1)", -1, &insert_,
                                 nullptr),
              SQLITE_OK);
  }
  ~Writer() {
    sqlite3_finalize(insert_);
    sqlite3_close_v2(db_);
  }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  sqlite3* db() const { return db_; }
  void exec(const char* sql) {
    EXPECT_EQ(sqlite3_exec(db_, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db_);
  }
  void commit_one_row() {
    // Random payloads: the index leaf differs from commit to commit, as with
    // clients' UUID keys, so passes have distinct pages to copy.
    const std::string payload = std::to_string(std::rand()) + std::string(200, 'x');
    sqlite3_bind_text(insert_, 1, payload.c_str(), -1, SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(insert_), SQLITE_DONE);
    sqlite3_reset(insert_);
    ++rows_;
  }
  std::int64_t rows() const { return rows_; }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  std::int64_t rows_ = 0;
};

std::int64_t count_rows(const std::string& path) {
  sqlite3* db = nullptr;
  std::int64_t n = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM rows", -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      n = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close_v2(db);
  return n;
}

TEST(WalCheckpointer, CopiesBesideTheWriterAndTheWalRestarts) {
  TempFile file;
  Writer writer(file.path());
  WalCheckpointOptions options;
  options.start_pages = 200;
  options.finish_pages = 50;
  options.force_pages = 1'000'000;  // never: the background passes must do it
  options.full_sync = false;
  auto started = WalCheckpointer::start(file.path(), options);
  ASSERT_TRUE(started.ok()) << started.error().detail;
  WalCheckpointer& checkpointer = *started.value();
  checkpointer.attach_writer(writer.db());

  // Commit until the WAL has restarted three times (bounded in time).
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  WalCheckpointStats s;
  while (std::chrono::steady_clock::now() < deadline) {
    writer.commit_one_row();
    // Paced like the sink's group commits, which wait for an fsync each: a
    // writer adding frames faster than passes copy them is the forced case.
    std::this_thread::sleep_for(500us);
    checkpointer.checkpoint_if_due(writer.db());
    s = checkpointer.stats();
    if (s.wal_restarts >= 3) break;
  }
  EXPECT_GE(s.wal_restarts, 3u);
  EXPECT_GE(s.background_passes, 1u);
  EXPECT_EQ(s.forced_passes, 0u);
  EXPECT_GT(s.background_seconds_max, 0.0);
  // Restarted: the WAL never grew much past where a pass starts.
  EXPECT_LT(s.wal_pages_max, 20 * options.start_pages);
  EXPECT_EQ(count_rows(file.path()), writer.rows());
}

TEST(WalCheckpointer, WriterForcesAPassWhenTheWalReachesItsLimit) {
  TempFile file;
  Writer writer(file.path());
  WalCheckpointOptions options;
  options.start_pages = 1'000'000;  // the background thread never starts a pass
  options.finish_pages = 50;
  options.force_pages = 300;
  options.full_sync = false;
  auto started = WalCheckpointer::start(file.path(), options);
  ASSERT_TRUE(started.ok()) << started.error().detail;
  WalCheckpointer& checkpointer = *started.value();
  checkpointer.attach_writer(writer.db());

  for (int i = 0; i < 3000; ++i) {
    writer.commit_one_row();
    checkpointer.checkpoint_if_due(writer.db());
  }
  const WalCheckpointStats s = checkpointer.stats();
  EXPECT_EQ(s.background_passes, 0u);
  EXPECT_GT(s.forced_passes, 0u);
  EXPECT_EQ(s.forced_passes, s.writer_passes);
  EXPECT_GT(s.wal_restarts, 0u);
  // One commit past the limit at most: a row is a few pages here.
  EXPECT_LE(s.wal_pages_max, options.force_pages + 10);
  EXPECT_EQ(count_rows(file.path()), writer.rows());
}

TEST(WalCheckpointer, NoPassBelowTheThresholds) {
  TempFile file;
  Writer writer(file.path());
  auto started = WalCheckpointer::start(file.path(), WalCheckpointOptions{});
  ASSERT_TRUE(started.ok()) << started.error().detail;
  WalCheckpointer& checkpointer = *started.value();
  checkpointer.attach_writer(writer.db());
  for (int i = 0; i < 100; ++i) {
    writer.commit_one_row();
    EXPECT_FALSE(checkpointer.checkpoint_if_due(writer.db()));
  }
  std::this_thread::sleep_for(50ms);
  const WalCheckpointStats s = checkpointer.stats();
  EXPECT_EQ(s.background_passes, 0u);
  EXPECT_EQ(s.writer_passes, 0u);
  EXPECT_GT(s.wal_pages, 100);  // a few pages per commit, all still in the WAL
  EXPECT_EQ(s.wal_restarts, 0u);
}

// top -H and perf tell its thread from the writer's and the io threads.
TEST(WalCheckpointer, ItsThreadIsNamed) {
  TempFile file;
  Writer writer(file.path());
  auto started = WalCheckpointer::start(file.path(), WalCheckpointOptions{});
  ASSERT_TRUE(started.ok()) << started.error().detail;
  bool found = false;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!found && std::chrono::steady_clock::now() < deadline) {
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream comm(task.path() / "comm");
      std::string name;
      std::getline(comm, name);
      found = found || name == "fd-checkpoint";
    }
    if (!found) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(found);
}

TEST(WalCheckpointer, StartFailsOnAMissingDirectory) {
  auto started = WalCheckpointer::start("/nonexistent-dir/fd.db", WalCheckpointOptions{});
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.error().detail.find("/nonexistent-dir/fd.db"), std::string::npos);
}

}  // namespace
}  // namespace fairdraw
