// SqliteSink: group commit of draws in per-activity seq order on one writer
// connection, reads on pooled read-only connections, migrations on open.
//
// Durability, in short:
// - An ack(true) fires only after the COMMIT of the transaction holding its row
//   returned. WAL with synchronous=FULL fsyncs the WAL in that COMMIT, so the
//   row survives kill -9 and power loss; with NORMAL it survives kill -9.
// - Rows of one activity are committed in seq order and only as a contiguous
//   prefix (lane.next is the first seq not yet in the file, rows ahead of it
//   wait in lane.waiting). A commit is atomic, so whatever a crash leaves in
//   the file is 0..n-1 for every activity, never a gap.
// - A seq that can never be recorded (refused, or its batch failed for good)
//   becomes the lane's hole: every later seq of that activity is refused too,
//   because committing it would leave a gap. The engine stops drawing on the
//   first refusal and a restart (or set_next_seq) starts the lane afresh.
#include "fairdraw/sink/sqlite_sink.hpp"

#include "fairdraw/sink/sink_common.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>
#include <variant>

#include "fairdraw/fnv1a.hpp"
#include "fairdraw/sink/migrations.hpp"
#include "fairdraw/sink/sqlite_memory.hpp"
#include "fairdraw/thread_name.hpp"

namespace fairdraw {
namespace {

using sink_common::call_ack;
using sink_common::decode_user_cursor;
using sink_common::encode_user_cursor;
using sink_common::prizes_from_json;
using sink_common::prizes_to_json;
using sink_common::UserCursor;

using SteadyClock = std::chrono::steady_clock;

// SQLITE_STATIC without the macro's C-style cast: every bound buffer outlives
// the step that reads it (statements are reset right after).
const sqlite3_destructor_type kStatic = nullptr;

constexpr int primary_code(int rc) { return rc & 0xff; }

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string message_of(sqlite3* db) {
  return db != nullptr ? std::string(sqlite3_errmsg(db)) : std::string("out of memory");
}

Error db_error(std::string_view what, sqlite3* db) {
  return make_error(ErrorKind::unavailable, std::string(what) + ": " + message_of(db));
}

std::int64_t to_i64(std::size_t n) {
  return n > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max() - 1)
             ? std::numeric_limits<std::int64_t>::max() - 1
             : static_cast<std::int64_t>(n);
}

int bind_text(sqlite3_stmt* s, int i, std::string_view v) {
  // A null data pointer would bind SQL NULL, not the empty string.
  const char* data = v.data() != nullptr ? v.data() : "";
  return sqlite3_bind_text(s, i, data, static_cast<int>(v.size()), kStatic);
}

int bind_optional(sqlite3_stmt* s, int i, const std::optional<std::string>& v) {
  return v ? bind_text(s, i, *v) : sqlite3_bind_null(s, i);
}

int bind_optional(sqlite3_stmt* s, int i, const std::optional<std::int64_t>& v) {
  return v ? sqlite3_bind_int64(s, i, *v) : sqlite3_bind_null(s, i);
}

std::string column_string(sqlite3_stmt* s, int i) {
  const unsigned char* text = sqlite3_column_text(s, i);
  const int bytes = sqlite3_column_bytes(s, i);
  if (text == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(text), static_cast<std::size_t>(bytes));
}


std::optional<std::int64_t> column_optional_i64(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_int64(s, i);
}

// The key_hash and user_hash columns (migration 002), indexed instead of the
// text; every query compares the text as well, so a collision never returns a
// wrong row. The top 24 bits hash the first 8 bytes, the low 40 bits the whole
// string (FNV-1a 64 both): ids that share a prefix (a client's numbered keys,
// time-ordered ULIDs, one load generator's run) stay next to each other in the
// index as their text would, while random ids (UUIDs) spread evenly. Stored as
// the signed integer SQLite keeps. Any change here needs a migration that
// recomputes both columns (and bench/startup.sh computes it too).
std::int64_t hash64(std::string_view text) {
  constexpr std::uint64_t kLow40 = (std::uint64_t{1} << 40) - 1;
  const std::uint64_t prefix = fnv1a64(text.substr(0, 8));
  const std::uint64_t whole = fnv1a64(text);
  return static_cast<std::int64_t>((prefix & ~kLow40) | (whole & kLow40));  // modular since C++20
}

// fairdraw_hash64(text) in SQL, for migration 002 to fill the hash columns of
// the rows it copies. NULL gives NULL (and the NOT NULL column refuses it).
void sql_hash64(sqlite3_context* context, int /*argc*/, sqlite3_value** argv) {
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return sqlite3_result_null(context);
  const auto* text = reinterpret_cast<const char*>(sqlite3_value_text(argv[0]));
  const int bytes = sqlite3_value_bytes(argv[0]);
  if (text == nullptr) return sqlite3_result_error_nomem(context);
  sqlite3_result_int64(context, hash64(std::string_view(text, static_cast<std::size_t>(bytes))));
}

// Resets a statement and drops its bindings when the scope ends, so a cached
// statement never holds a read transaction open or points at freed buffers.
class StatementScope {
 public:
  explicit StatementScope(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~StatementScope() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  StatementScope(const StatementScope&) = delete;
  StatementScope& operator=(const StatementScope&) = delete;

 private:
  sqlite3_stmt* stmt_;
};

// One connection and its cached prepared statements (keyed by the SQL text,
// always one of the constants below). Used by one thread at a time.
class Connection {
 public:
  static Result<std::unique_ptr<Connection>> open(const std::string& path, bool writable,
                                                  std::chrono::milliseconds busy_timeout) {
    sqlite3* db = nullptr;
    const int flags =
        (writable ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY) |
        SQLITE_OPEN_NOMUTEX;
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    auto conn = std::unique_ptr<Connection>(new Connection(db));
    if (rc != SQLITE_OK) {
      return make_error(ErrorKind::unavailable,
                        "cannot open SQLite database '" + path + "': " + message_of(db));
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, static_cast<int>(std::min<std::int64_t>(
                                 busy_timeout.count(), std::numeric_limits<int>::max())));
    return conn;
  }

  ~Connection() {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* db() const { return db_; }

  Result<sqlite3_stmt*> statement(std::string_view sql) {
    if (auto it = statements_.find(sql); it != statements_.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(stmt);
      return db_error("preparing a statement", db_);
    }
    statements_.emplace(sql, stmt);
    return stmt;
  }

  Status exec(const char* sql, std::string_view what) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return db_error(what, db_);
    return ok_status();
  }

  void rollback_if_open() {
    if (sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<std::string_view, sqlite3_stmt*> statements_;
};

// Steps a bound statement to the end, handing each row to on_row.
template <class OnRow>
Status run_rows(Connection& conn, sqlite3_stmt* stmt, std::string_view what, OnRow&& on_row) {
  for (;;) {
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
      on_row(stmt);
      continue;
    }
    if (rc == SQLITE_DONE) return ok_status();
    return db_error(what, conn.db());
  }
}

#define FD_DRAW_COLUMNS                                                                        \
  "draw_id, activity_id, seq, epoch, slot, user_id, idempotency_key, candidate_id, prize_id, " \
  "prize_name, won, drawn_at_ms"

// A batch goes into the table as multi-row INSERTs of these sizes, largest
// first (a batch of 29 rows: 16 + 8 + 4 + 1). Each statement opens its six
// B-tree cursors and sizes its record buffers once for all its rows; a
// row-at-a-time INSERT did that, and malloc'ed each (Debian's libsqlite3 is
// built without lookaside), for every row, besides its own start and reset.
// OR FAIL, not the default ABORT: a multi-row INSERT that may abort inside a
// transaction gets a statement journal, a copy of every page it changes
// (so it can undo its earlier rows), which made it slower than one row at a
// time. With FAIL a constraint error keeps the statement's earlier rows and
// stops at the failing one, and sqlite3_changes() says how many went in.
constexpr std::array<std::size_t, 7> kChunkRows{64, 32, 16, 8, 4, 2, 1};
constexpr int kDrawParams = 14;  // bound values per row, see bind_draw

std::string make_insert_sql(std::size_t rows) {
  std::string sql = "INSERT OR FAIL INTO draws (" FD_DRAW_COLUMNS ", key_hash, user_hash) VALUES ";
  for (std::size_t row = 0; row < rows; ++row) {
    sql += row == 0 ? "(" : ", (";
    for (int column = 1; column <= kDrawParams; ++column) {
      if (column > 1) sql += ", ";
      // Appended in two steps: GCC 12 at -O3 warns (-Wrestrict, a false positive) on "?" + to_string().
      sql += '?';
      sql += std::to_string(row * kDrawParams + static_cast<std::size_t>(column));
    }
    sql += ")";
  }
  return sql;
}

// The SQL of kChunkRows[index] rows; static, so the statement cache can key on it.
std::string_view insert_sql(std::size_t index) {
  static const std::array<std::string, kChunkRows.size()> texts = [] {
    std::array<std::string, kChunkRows.size()> made;
    for (std::size_t i = 0; i < kChunkRows.size(); ++i) made[i] = make_insert_sql(kChunkRows[i]);
    return made;
  }();
  return texts[index];
}

constexpr std::string_view kMaxSeq = "SELECT MAX(seq) FROM draws WHERE activity_id = ?1";
constexpr std::string_view kFindDraw = "SELECT " FD_DRAW_COLUMNS " FROM draws WHERE draw_id = ?1";
// The lookups by key and by user name their hash index: without statistics the
// planner would rather walk the activity's (activity_id, seq) index for ORDER BY seq.
constexpr std::string_view kFindByKey =
    "SELECT " FD_DRAW_COLUMNS
    " FROM draws INDEXED BY draws_by_key_hash"
    " WHERE key_hash = ?3 AND activity_id = ?1 AND idempotency_key = ?2"
    " ORDER BY seq LIMIT 1";
constexpr std::string_view kActivityDraws =
    "SELECT " FD_DRAW_COLUMNS
    " FROM draws WHERE activity_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";
constexpr std::string_view kUserDrawsFirst =
    "SELECT " FD_DRAW_COLUMNS
    " FROM draws INDEXED BY draws_by_user_hash"
    " WHERE user_hash = ?7 AND user_id = ?1 AND (?2 IS NULL OR activity_id = ?2)"
    " ORDER BY drawn_at_ms DESC, seq DESC, draw_id DESC LIMIT ?3";
constexpr std::string_view kUserDrawsAfter =
    "SELECT " FD_DRAW_COLUMNS
    " FROM draws INDEXED BY draws_by_user_hash"
    " WHERE user_hash = ?7 AND user_id = ?1 AND (?2 IS NULL OR activity_id = ?2)"
    " AND (drawn_at_ms, seq, draw_id) < (?4, ?5, ?6)"
    " ORDER BY drawn_at_ms DESC, seq DESC, draw_id DESC LIMIT ?3";
// draws_since and user_counts_since read all of the activity's rows (no time
// index since migration 003); nothing on a request's path or in recovery calls them.
constexpr std::string_view kDrawsSince =
    "SELECT * FROM (SELECT " FD_DRAW_COLUMNS
    " FROM draws WHERE activity_id = ?1 AND drawn_at_ms >= ?2"
    " ORDER BY drawn_at_ms DESC, seq DESC LIMIT ?3) ORDER BY drawn_at_ms, seq";
constexpr std::string_view kUserCountsSince =
    "SELECT user_id, COUNT(*) FROM draws WHERE activity_id = ?1 AND drawn_at_ms >= ?2"
    " GROUP BY user_id ORDER BY user_id";
// Recovery reads an activity's draws once and counts in memory (grouping by
// user in SQLite sorted every draw in a temporary b-tree). When the activity
// holds most of the file the table itself is read in rowid order (sequential
// pages, no index lookup per row); otherwise its (activity_id, seq) index is
// walked. Past 2 x 65,536 rows, in two ranges read on two connections at once.
#define FD_TOTALS_COLUMNS "seq, epoch, user_id, drawn_at_ms, won, prize_id"
constexpr std::string_view kMaxRowid = "SELECT MAX(rowid) FROM draws";
constexpr std::string_view kTotalsByRowid =
    "SELECT " FD_TOTALS_COLUMNS " FROM draws NOT INDEXED"
    " WHERE rowid BETWEEN ?2 AND ?3 AND activity_id = ?1";
constexpr std::string_view kTotalsBySeq =
    "SELECT " FD_TOTALS_COLUMNS " FROM draws WHERE activity_id = ?1 AND seq BETWEEN ?2 AND ?3";
#undef FD_TOTALS_COLUMNS
// Live idempotency keys: the activity's last seqs (through (activity_id, seq)),
// and the newest of the live draws before them (the same index over the older
// seqs: ~0.1 s per 10^6 rows, since migration 003 dropped the time index).
constexpr std::string_view kLiveDraws =
    "SELECT " FD_DRAW_COLUMNS
    " FROM draws WHERE activity_id = ?1 AND seq >= ?2 AND drawn_at_ms >= ?3 ORDER BY seq";
constexpr std::string_view kNewestLiveBefore =
    "SELECT MAX(drawn_at_ms) FROM draws WHERE activity_id = ?1 AND drawn_at_ms >= ?3 AND seq < ?2";
constexpr std::string_view kSaveActivity =
    "INSERT INTO activities (id, config_json, ended, created_at_ms, updated_at_ms)"
    " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO UPDATE SET"
    " config_json = excluded.config_json, ended = excluded.ended,"
    " created_at_ms = excluded.created_at_ms, updated_at_ms = excluded.updated_at_ms";
constexpr std::string_view kLoadActivities =
    "SELECT id, config_json, ended, created_at_ms, updated_at_ms FROM activities"
    " ORDER BY created_at_ms, id";
constexpr std::string_view kSaveEpoch =
    "INSERT INTO epochs (activity_id, epoch, seed, commitment, prizes_json, miss_weight,"
    " epoch_size, first_seq, revealed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    " ON CONFLICT (activity_id, epoch) DO UPDATE SET seed = excluded.seed,"
    " commitment = excluded.commitment, prizes_json = excluded.prizes_json,"
    " miss_weight = excluded.miss_weight, epoch_size = excluded.epoch_size,"
    " first_seq = excluded.first_seq, revealed_at = excluded.revealed_at";
constexpr std::string_view kLoadEpochs =
    "SELECT activity_id, epoch, seed, commitment, prizes_json, miss_weight, epoch_size, first_seq,"
    " revealed_at FROM epochs WHERE activity_id = ?1 ORDER BY epoch";

#undef FD_DRAW_COLUMNS

// See open_writer(): 64 MiB of page cache (negative: KiB), and while
// migrations run, a checkpoint every 8,000 WAL pages (32 MiB) instead of
// SQLite's default 1,000 (then WalCheckpointer takes over).
constexpr const char* kWriterCacheSize = "PRAGMA cache_size = -65536";
constexpr const char* kWalAutocheckpoint = "PRAGMA wal_autocheckpoint = 8000";

// The bytes of a TEXT column, valid until the statement steps or resets.
std::string_view column_view(sqlite3_stmt* s, int i) {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return {text ? text : "", static_cast<std::size_t>(sqlite3_column_bytes(s, i))};
}

void assign_optional(std::optional<std::string>& out, sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL) {
    out.reset();
  } else if (out) {
    out->assign(column_view(s, i));
  } else {
    out.emplace(column_view(s, i));
  }
}

// Into an existing record: a record read again and again keeps its strings'
// buffers, so reading many rows allocates nothing after the first few.
void read_draw_into(sqlite3_stmt* s, DrawRecord& r) {
  r.draw_id.assign(column_view(s, 0));
  r.activity_id.assign(column_view(s, 1));
  r.seq = sqlite3_column_int64(s, 2);
  r.epoch = sqlite3_column_int64(s, 3);
  r.slot = sqlite3_column_int64(s, 4);
  r.user_id.assign(column_view(s, 5));
  r.idempotency_key.assign(column_view(s, 6));
  assign_optional(r.candidate_id, s, 7);
  assign_optional(r.prize_id, s, 8);
  assign_optional(r.prize_name, s, 9);
  r.won = sqlite3_column_int64(s, 10) != 0;
  r.drawn_at_ms = sqlite3_column_int64(s, 11);
}

DrawRecord read_draw(sqlite3_stmt* s) {
  DrawRecord r;
  read_draw_into(s, r);
  return r;
}

// A single-value query (MAX(...)) bound by `bind`; nullopt when it is NULL.
template <class Bind>
Result<std::optional<std::int64_t>> query_optional_i64(Connection& c, std::string_view sql,
                                                       std::string_view what, Bind&& bind) {
  auto stmt = c.statement(sql);
  if (!stmt.ok()) return stmt.error();
  StatementScope scope(*stmt);
  bind(*stmt);
  std::optional<std::int64_t> value;
  auto ran = run_rows(c, *stmt, what, [&](sqlite3_stmt* row) {
    if (sqlite3_column_type(row, 0) != SQLITE_NULL) value = sqlite3_column_int64(row, 0);
  });
  if (!ran.ok()) return ran.error();
  return value;
}

// What one range of the totals scan counted.
struct TotalsPart {
  std::int64_t max_seq = -1;
  std::map<std::string, std::int64_t, std::less<>> wins;
  std::map<std::int64_t, std::int64_t> first_seq_by_epoch;
};

// Reads the rows `stmt` selects (kTotalsByRowid or kTotalsBySeq, bound), counts
// them into `part` and hands every user to `add`.
Status count_totals(Connection& c, sqlite3_stmt* stmt, std::int64_t since_ms,
                    const Sink::AddUserCounts& add, TotalsPart& part) {
  // Consecutive rows mostly share their epoch: its lowest seq is kept in locals
  // and written to the map only when the epoch changes.
  std::optional<std::int64_t> epoch;
  std::int64_t epoch_min = 0;
  auto flush_epoch = [&] {
    if (!epoch) return;
    auto [it, inserted] = part.first_seq_by_epoch.emplace(*epoch, epoch_min);
    if (!inserted) it->second = std::min(it->second, epoch_min);
  };
  auto ran = run_rows(c, stmt, "reading totals", [&](sqlite3_stmt* s) {
    const std::int64_t seq = sqlite3_column_int64(s, 0);
    const std::int64_t row_epoch = sqlite3_column_int64(s, 1);
    const std::int64_t ms = sqlite3_column_int64(s, 3);
    part.max_seq = std::max(part.max_seq, seq);
    if (row_epoch != epoch) {
      flush_epoch();
      epoch = row_epoch;
      epoch_min = seq;
    } else {
      epoch_min = std::min(epoch_min, seq);
    }
    if (sqlite3_column_int64(s, 4) == 1 && sqlite3_column_type(s, 5) != SQLITE_NULL) {
      const std::string_view prize = column_view(s, 5);
      auto it = part.wins.find(prize);
      if (it == part.wins.end()) it = part.wins.emplace(std::string(prize), 0).first;
      ++it->second;
    }
    add(column_view(s, 2), 1, ms >= since_ms ? 1 : 0);
  });
  flush_epoch();
  return ran;
}

// Binds one row of an insert_sql() statement: row `row` takes parameters
// row * kDrawParams + 1 .. + kDrawParams.
int bind_draw(sqlite3_stmt* s, const DrawRecord& r, std::size_t row) {
  const int base = static_cast<int>(row) * kDrawParams;
  int rc = SQLITE_OK;
  auto keep = [&rc](int next) {
    if (rc == SQLITE_OK) rc = next;
  };
  keep(bind_text(s, base + 1, r.draw_id));
  keep(bind_text(s, base + 2, r.activity_id));
  keep(sqlite3_bind_int64(s, base + 3, r.seq));
  keep(sqlite3_bind_int64(s, base + 4, r.epoch));
  keep(sqlite3_bind_int64(s, base + 5, r.slot));
  keep(bind_text(s, base + 6, r.user_id));
  keep(bind_text(s, base + 7, r.idempotency_key));
  keep(bind_optional(s, base + 8, r.candidate_id));
  keep(bind_optional(s, base + 9, r.prize_id));
  keep(bind_optional(s, base + 10, r.prize_name));
  keep(sqlite3_bind_int(s, base + 11, r.won ? 1 : 0));
  keep(sqlite3_bind_int64(s, base + 12, r.drawn_at_ms));
  keep(sqlite3_bind_int64(s, base + 13, hash64(r.idempotency_key)));
  keep(sqlite3_bind_int64(s, base + 14, hash64(r.user_id)));
  return rc;
}

}  // namespace

struct SqliteSink::Impl {
  struct Item {
    DrawRecord record;
    Ack ack;
  };
  struct SetNextSeq {
    std::string activity_id;
    std::int64_t next_seq = 0;
  };
  using Entry = std::variant<Item, SetNextSeq>;

  using Waiting = std::map<std::int64_t, Item>;

  // The writer's view of one activity. Writer thread only.
  struct Lane {
    std::optional<std::int64_t> next;  // first seq not in the file; unknown until loaded
    std::optional<std::int64_t> hole;  // first seq that will never be in the file
    Waiting waiting;
    bool touched = false;  // in this round's `touched`
  };

  using Acks = std::vector<std::pair<Ack, bool>>;

  // Map nodes of rows that left a lane's `waiting`, kept to hold the next rows
  // (a row passes through `waiting` even when it is next in line): up to this
  // many, beyond which they are freed.
  static constexpr std::size_t kSpareNodes = 4096;
  // Past this many entries, a drained queue gives its memory back (after a
  // burst) instead of keeping it for the next one.
  static constexpr std::size_t kQueueKeep = 8192;

  explicit Impl(SqliteSinkOptions o) : options(std::move(o)) {}
  ~Impl() {
    if (writer && checkpointer) sqlite3_wal_hook(writer->db(), nullptr, nullptr);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  SqliteSinkOptions options;

  // The writer connection: batches (writer thread) and save_* (any thread).
  std::mutex write_mutex;
  std::unique_ptr<Connection> writer;
  // The writer's insert_sql(i) statements (owned by its statement cache).
  std::array<sqlite3_stmt*, kChunkRows.size()> insert_chunk{};

  // Copies the WAL back into the file beside the writer (its hook is on the
  // writer connection: it goes before the writer does, see ~Impl).
  std::unique_ptr<WalCheckpointer> checkpointer;

  std::mutex read_mutex;
  std::vector<std::unique_ptr<Connection>> idle_readers;

  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  // Appended entries; [queue_head, end) not yet taken by the writer. A vector
  // reused from round to round, not a deque (a block per entry, as an entry
  // is larger than libstdc++'s 512-byte deque block).
  std::vector<Entry> queue;
  std::size_t queue_head = 0;
  std::unordered_map<std::string, std::int64_t> refused_seqs;  // activity -> lowest refused seq
  SteadyClock::time_point first_queued_at{};
  bool stopping = false;

  std::unordered_map<std::string, Lane> lanes;
  std::size_t lanes_with_hole = 0;

  // The writer loop's working sets, kept from round to round so a round
  // allocates nothing once they have grown (writer thread only).
  std::vector<Entry> intake;
  std::vector<std::pair<const std::string*, Lane*>> touched;
  std::vector<Waiting::node_type> spare_nodes;
  std::vector<Item> round_rows;
  std::vector<char> round_rejected;
  Acks round_acks;

  std::atomic<std::size_t> pending{0};
  std::atomic<std::uint64_t> committed_rows{0};
  std::atomic<std::uint64_t> committed_batches{0};
  std::atomic<std::uint64_t> failed_batches{0};
  std::atomic<double> last_commit_seconds{0};
  std::atomic<bool> is_healthy{true};
  mutable std::mutex error_mutex;
  std::string last_error;

  std::mutex stop_mutex;
  bool stopped = false;
  std::thread thread;

  // ---- open -------------------------------------------------------------

  Status apply_migrations() {
    Connection& c = *writer;
    if (auto made =
            c.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                   " name TEXT, applied_at_ms INTEGER)",
                   "creating schema_migrations");
        !made.ok()) {
      return made;
    }
    const auto& known = sqlite_migrations();
    const int newest_known = known.empty() ? 0 : known.back().version;
    sqlite3_stmt* newest = nullptr;
    if (sqlite3_prepare_v2(c.db(), "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", -1,
                           &newest, nullptr) != SQLITE_OK) {
      sqlite3_finalize(newest);
      return db_error("reading schema_migrations", c.db());
    }
    std::int64_t newest_applied = 0;
    const int rc = sqlite3_step(newest);
    if (rc == SQLITE_ROW) newest_applied = sqlite3_column_int64(newest, 0);
    sqlite3_finalize(newest);
    if (rc != SQLITE_ROW) return db_error("reading schema_migrations", c.db());
    if (newest_applied > newest_known) {
      return make_error(ErrorKind::unavailable, "schema version " + std::to_string(newest_applied) +
                                                    " is newer than this build knows (" +
                                                    std::to_string(newest_known) + ")");
    }

    for (const Migration& m : known) {
      const std::string label = "migration " + std::string(m.name);
      // IMMEDIATE takes the write lock first, so two processes opening the
      // same file at once cannot both apply the same version.
      if (auto begun = c.exec("BEGIN IMMEDIATE", label); !begun.ok()) return begun;
      sqlite3_stmt* check = nullptr;
      bool applied = false;
      int step = SQLITE_ERROR;
      if (sqlite3_prepare_v2(c.db(), "SELECT 1 FROM schema_migrations WHERE version = ?1", -1,
                             &check, nullptr) == SQLITE_OK) {
        sqlite3_bind_int(check, 1, m.version);
        step = sqlite3_step(check);
        applied = step == SQLITE_ROW;
      }
      sqlite3_finalize(check);
      if (step != SQLITE_ROW && step != SQLITE_DONE) {
        Error e = db_error(label, c.db());
        c.rollback_if_open();
        return e;
      }
      if (applied) {
        c.rollback_if_open();
        continue;
      }
      const std::string sql(m.sql);
      if (sqlite3_exec(c.db(), sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
        Error e = db_error(label, c.db());
        c.rollback_if_open();
        return e;
      }
      sqlite3_stmt* record = nullptr;
      int recorded = sqlite3_prepare_v2(
          c.db(),
          "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)", -1,
          &record, nullptr);
      if (recorded == SQLITE_OK) {
        sqlite3_bind_int(record, 1, m.version);
        bind_text(record, 2, m.name);
        sqlite3_bind_int64(record, 3, wall_ms());
        recorded = sqlite3_step(record);
      }
      sqlite3_finalize(record);
      if (recorded != SQLITE_DONE) {
        Error e = db_error(label, c.db());
        c.rollback_if_open();
        return e;
      }
      if (auto committed = c.exec("COMMIT", label); !committed.ok()) {
        c.rollback_if_open();
        return committed;
      }
    }
    return ok_status();
  }

  Status open_writer() {
    auto conn = Connection::open(options.path, true, options.busy_timeout);
    if (!conn.ok()) return conn.error();
    writer = std::move(conn.value());
    const std::string where = " on '" + options.path + "'";

    sqlite3_stmt* mode = nullptr;
    std::string journal;
    if (sqlite3_prepare_v2(writer->db(), "PRAGMA journal_mode = WAL", -1, &mode, nullptr) ==
            SQLITE_OK &&
        sqlite3_step(mode) == SQLITE_ROW) {
      journal = column_string(mode, 0);
    }
    sqlite3_finalize(mode);
    if (journal != "wal") {
      return make_error(ErrorKind::unavailable, "cannot switch '" + options.path +
                                                    "' to WAL mode: " + message_of(writer->db()));
    }
    const char* sync = options.synchronous == SqliteSinkOptions::Synchronous::full
                           ? "PRAGMA synchronous = FULL"
                           : "PRAGMA synchronous = NORMAL";
    if (auto set = writer->exec(sync, "setting synchronous" + where); !set.ok()) return set;
    // Bounds the WAL file left behind by a burst once it has been checkpointed.
    if (auto set = writer->exec("PRAGMA journal_size_limit = 67108864", "limiting the WAL" + where);
        !set.ok()) {
      return set;
    }
    // The writer's page cache holds the upper levels and the hot leaves of the
    // random-keyed indexes (SQLite's default is 2 MB: with random keys most
    // inserts then read their leaf back from the file first).
    if (auto set = writer->exec(kWriterCacheSize, "sizing the page cache" + where); !set.ok()) {
      return set;
    }
    // A checkpoint copies every distinct page the WAL holds into the file and
    // fsyncs it; with random keys the same index leaves come back in commit
    // after commit, so checkpointing less often copies each of them fewer times.
    if (auto set = writer->exec(kWalAutocheckpoint, "setting wal_autocheckpoint" + where);
        !set.ok()) {
      return set;
    }
    if (sqlite3_create_function_v2(writer->db(), "fairdraw_hash64", 1,
                                   SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, nullptr,
                                   sql_hash64, nullptr, nullptr, nullptr) != SQLITE_OK) {
      return db_error("registering fairdraw_hash64" + where, writer->db());
    }
    if (auto migrated = apply_migrations(); !migrated.ok()) {
      return make_error(migrated.error().kind,
                        "migrating '" + options.path + "': " + migrated.error().detail);
    }
    for (std::size_t i = 0; i < kChunkRows.size(); ++i) {
      auto prepared = writer->statement(insert_sql(i));
      if (!prepared.ok()) return make_error(prepared.error().kind, prepared.error().detail + where);
      insert_chunk[i] = prepared.value();
    }
    // From here on the WAL goes back into the file beside the writer, not in
    // the COMMIT that crosses wal_autocheckpoint (which only served migrations).
    WalCheckpointOptions checkpoint = options.checkpoint;
    checkpoint.full_sync = options.synchronous == SqliteSinkOptions::Synchronous::full;
    auto started = WalCheckpointer::start(options.path, checkpoint);
    if (!started.ok()) return started.error();
    checkpointer = std::move(started.value());
    checkpointer->attach_writer(writer->db());
    return ok_status();
  }

  // ---- append side ------------------------------------------------------

  void append(DrawRecord record, Ack ack) {
    Item item{std::move(record), std::move(ack)};
    bool queued = false;
    bool hole_noted = false;
    try {
      std::lock_guard lock(queue_mutex);
      if (!stopping && pending.load(std::memory_order_relaxed) < options.max_queue) {
        if (queued_entries() == 0) first_queued_at = SteadyClock::now();
        queue.emplace_back(std::move(item));
        pending.fetch_add(1, std::memory_order_relaxed);
        queued = true;
      } else if (!stopping) {
        // This seq will never be in the file: the writer must refuse every
        // later seq of the activity too, or the record would get a gap.
        auto [it, inserted] = refused_seqs.try_emplace(item.record.activity_id, item.record.seq);
        if (!inserted) it->second = std::min(it->second, item.record.seq);
        hole_noted = true;
      }
    } catch (...) {
      queued = false;
    }
    if (queued || hole_noted) queue_cv.notify_one();
    if (!queued) call_ack(item.ack, false);
  }

  void set_next_seq(std::string activity_id, std::int64_t next_seq) {
    {
      std::lock_guard lock(queue_mutex);
      if (stopping) return;
      queue.emplace_back(SetNextSeq{std::move(activity_id), next_seq});
    }
    queue_cv.notify_one();
  }

  // Entries appended and not yet taken by the writer (queue_mutex held).
  std::size_t queued_entries() const { return queue.size() - queue_head; }

  void stop() {
    std::lock_guard stop_lock(stop_mutex);
    if (stopped) return;
    {
      std::lock_guard lock(queue_mutex);
      stopping = true;
    }
    queue_cv.notify_all();
    if (thread.joinable()) {
      if (thread.get_id() == std::this_thread::get_id())
        return;  // called from an ack: the loop ends by itself
      thread.join();
    }
    stopped = true;
  }

  // ---- writer thread ----------------------------------------------------

  void run() {
    for (;;) {
      std::unordered_map<std::string, std::int64_t> refused;
      {
        std::unique_lock lock(queue_mutex);
        const bool was_idle = queued_entries() == 0 && refused_seqs.empty();
        queue_cv.wait(lock,
                      [&] { return stopping || queued_entries() > 0 || !refused_seqs.empty(); });
        if (queued_entries() == 0 && refused_seqs.empty()) break;  // stopping, and drained
        // Rows that piled up during the previous commit go at once; only a
        // writer that was idle waits for its batch to fill.
        if (was_idle && options.max_batch_delay.count() > 0 && !stopping &&
            queued_entries() < options.batch_max) {
          queue_cv.wait_until(lock, first_queued_at + options.max_batch_delay, [&] {
            return stopping || queued_entries() >= options.batch_max;
          });
        }
        take_queued();
        refused.swap(refused_seqs);
      }
      try {
        round(intake, refused);
      } catch (const std::exception& e) {
        // Out of memory mid-round: the rows of this round may go unacknowledged.
        is_healthy.store(false, std::memory_order_relaxed);
        note_error(std::string("writer: ") + e.what());
        reset_round();
      }
      // After the round's acks fired: a pass here delays the next batch, not this one.
      std::lock_guard lock(write_mutex);
      checkpointer->checkpoint_if_due(writer->db());
    }
    // Rows still waiting behind a gap at shutdown can never be committed.
    Acks acks;
    for (auto& [id, lane] : lanes) {
      for (auto& [seq, item] : lane.waiting) acks.emplace_back(std::move(item.ack), false);
      lane.waiting.clear();
    }
    fire(acks);
  }

  // Moves up to batch_max queued entries into `intake` (queue_mutex held).
  void take_queued() {
    intake.clear();
    const std::size_t n = std::min(queued_entries(), options.batch_max);
    for (std::size_t i = 0; i < n; ++i) intake.push_back(std::move(queue[queue_head + i]));
    queue_head += n;
    if (queue_head == queue.size()) {
      queue.clear();
      queue_head = 0;
      if (queue.capacity() > kQueueKeep) std::vector<Entry>().swap(queue);
    } else if (queue_head >= queue.size() / 2) {
      // The writer is behind: drop the taken half so the vector does not grow forever.
      queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(queue_head));
      queue_head = 0;
    }
  }

  // After a round that threw: nothing of it is kept but the lanes themselves.
  void reset_round() {
    for (auto& [id, lane] : touched) lane->touched = false;
    touched.clear();
    intake.clear();
    round_rows.clear();
    round_acks.clear();
  }

  void refuse(Item& item, Acks& acks) { acks.emplace_back(std::move(item.ack), false); }

  // A node out of a lane's `waiting`, its row already moved or refused.
  void recycle(Waiting::node_type node) {
    if (spare_nodes.size() < kSpareNodes) spare_nodes.push_back(std::move(node));
  }

  // The lane's `touched` entry for this round, the lane made if it is new.
  Lane& touch(const std::string& activity_id) {
    auto it = lanes.find(activity_id);
    if (it == lanes.end()) it = lanes.try_emplace(activity_id).first;
    Lane& lane = it->second;
    if (!lane.touched) {
      lane.touched = true;
      touched.emplace_back(&it->first, &lane);
    }
    return lane;
  }

  void mark_hole(Lane& lane, std::int64_t seq, Acks& acks) {
    if (lane.next && seq < *lane.next) return;  // a duplicate of a recorded seq: no gap
    if (!lane.hole) {
      lane.hole = seq;
      ++lanes_with_hole;
    } else if (seq < *lane.hole) {
      lane.hole = seq;
    }
    for (auto it = lane.waiting.lower_bound(*lane.hole); it != lane.waiting.end();) {
      refuse(it->second, acks);
      recycle(lane.waiting.extract(it++));
    }
  }

  void accept(Lane& lane, Item item, Acks& acks) {
    const std::int64_t seq = item.record.seq;
    if ((lane.hole && seq >= *lane.hole) || (lane.next && seq < *lane.next)) {
      return refuse(item, acks);
    }
    if (spare_nodes.empty()) {
      auto [it, inserted] = lane.waiting.try_emplace(seq, std::move(item));
      if (!inserted) refuse(item, acks);  // the same seq twice: the first one stands
      return;
    }
    Waiting::node_type node = std::move(spare_nodes.back());
    spare_nodes.pop_back();
    node.key() = seq;
    node.mapped() = std::move(item);
    auto placed = lane.waiting.insert(std::move(node));
    if (!placed.inserted) {
      refuse(placed.node.mapped(), acks);  // the same seq twice: the first one stands
      recycle(std::move(placed.node));
    }
  }

  void drop_stale(Lane& lane, Acks& acks) {
    if (!lane.next) return;
    for (auto it = lane.waiting.begin(); it != lane.waiting.end() && it->first < *lane.next;) {
      refuse(it->second, acks);
      recycle(lane.waiting.extract(it++));
    }
  }

  void note_error(std::string message) {
    std::lock_guard lock(error_mutex);
    last_error = std::move(message);
  }

  void backoff(int attempt) {
    const auto delay = options.retry_backoff * (1 << std::min(attempt, 6));
    std::this_thread::sleep_for(
        std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(2)));
  }

  bool load_next(const std::string& activity_id, Lane& lane, std::string& error) {
    std::lock_guard lock(write_mutex);
    auto stmt = writer->statement(kMaxSeq);
    if (!stmt.ok()) {
      error = stmt.error().detail;
      return false;
    }
    StatementScope scope(*stmt);
    bind_text(*stmt, 1, activity_id);
    if (sqlite3_step(*stmt) != SQLITE_ROW) {
      error = "reading MAX(seq) of '" + activity_id + "': " + message_of(writer->db());
      return false;
    }
    lane.next =
        sqlite3_column_type(*stmt, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(*stmt, 0) + 1;
    return true;
  }

  // One transaction for the whole batch. A constraint violation refuses that
  // row and the rest of its activity's rows (they would follow a gap) while
  // the other activities' rows still commit; any other error fails the batch.
  // BEGIN and COMMIT run once per batch: prepared once and kept, not parsed
  // each time (sqlite3_exec's parse cost about as much as a small batch's inserts).
  int step_cached(std::string_view sql) {
    auto stmt = writer->statement(sql);
    if (!stmt.ok()) return SQLITE_ERROR;
    const int rc = sqlite3_step(*stmt);
    sqlite3_reset(*stmt);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
  }

  // Rows go in by chunks (see kChunkRows); the rows of one activity are next to
  // each other in the batch. When a chunk hits a constraint, its first
  // sqlite3_changes() rows are in and the rest are not; those go in one at a
  // time, so the refused row is always one that fails by itself, as when every
  // row was its own INSERT (and a trigger's RAISE(ABORT), which undoes the
  // whole chunk and leaves sqlite3_changes() at 0, still refuses only the row
  // that raised it).
  bool commit_attempt(std::vector<Item>& batch, std::vector<char>& rejected, std::string& error) {
    std::lock_guard lock(write_mutex);
    std::fill(rejected.begin(), rejected.end(), 0);
    sqlite3* db = writer->db();
    if (step_cached("BEGIN IMMEDIATE") != SQLITE_OK) {
      error = "beginning a batch: " + message_of(db);
      writer->rollback_if_open();
      return false;
    }
    std::string_view refused_activity;
    bool refusing = false;
    std::size_t alone_until = 0;  // rows before this go in one at a time (a failed chunk's rest)
    std::size_t i = 0;
    while (i < batch.size()) {
      if (refusing && batch[i].record.activity_id == refused_activity) {
        rejected[i] = 1;
        ++i;
        continue;
      }
      refusing = false;
      std::size_t chunk = kChunkRows.size() - 1;  // one row
      if (i >= alone_until) {
        chunk = 0;
        while (kChunkRows[chunk] > batch.size() - i) ++chunk;
      }
      const std::size_t rows = kChunkRows[chunk];
      sqlite3_stmt* stmt = insert_chunk[chunk];
      int rc = SQLITE_OK;
      for (std::size_t k = 0; k < rows && rc == SQLITE_OK; ++k) {
        rc = bind_draw(stmt, batch[i + k].record, k);
      }
      if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
      const int kept = rc == SQLITE_DONE ? static_cast<int>(rows) : sqlite3_changes(db);
      const std::string message = rc == SQLITE_DONE ? std::string() : message_of(db);
      sqlite3_reset(stmt);
      sqlite3_clear_bindings(stmt);
      if (rc == SQLITE_DONE) {
        i += rows;
        continue;
      }
      const DrawRecord& r = batch[i].record;
      if (sqlite3_get_autocommit(db) != 0 || primary_code(rc) != SQLITE_CONSTRAINT || kept < 0 ||
          static_cast<std::size_t>(kept) >= rows) {
        error = "inserting draws from seq " + std::to_string(r.seq) + " of '" + r.activity_id +
                "': " + message;
        writer->rollback_if_open();
        return false;
      }
      if (rows > 1) {
        alone_until = i + rows;
        i += static_cast<std::size_t>(kept);
        continue;
      }
      rejected[i] = 1;
      refusing = true;
      refused_activity = r.activity_id;
      note_error("refused draw seq " + std::to_string(r.seq) + " of '" + r.activity_id +
                 "': " + message);
      ++i;
    }
    if (step_cached("COMMIT") != SQLITE_OK) {
      error = "committing a batch: " + message_of(db);
      writer->rollback_if_open();
      return false;
    }
    return true;
  }

  void round(std::vector<Entry>& entries, std::unordered_map<std::string, std::int64_t>& refused) {
    Acks& acks = round_acks;
    std::vector<Item>& batch = round_rows;
    for (Entry& entry : entries) {
      if (auto* set = std::get_if<SetNextSeq>(&entry)) {
        Lane& lane = touch(set->activity_id);
        lane.next = set->next_seq;
        if (lane.hole) {
          lane.hole.reset();
          --lanes_with_hole;
        }
        drop_stale(lane, acks);
        continue;
      }
      Item& item = std::get<Item>(entry);
      Lane& lane = touch(item.record.activity_id);  // before the item is moved into accept
      accept(lane, std::move(item), acks);
    }
    entries.clear();
    for (const auto& [id, seq] : refused) mark_hole(touch(id), seq, acks);

    for (auto& [id, lane] : touched) {
      if (lane->next || (lane->waiting.empty() && !lane->hole)) continue;
      std::string error;
      bool loaded = false;
      for (int attempt = 0; attempt < std::max(1, options.commit_attempts) && !loaded; ++attempt) {
        if (attempt > 0) backoff(attempt - 1);
        loaded = load_next(*id, *lane, error);
      }
      if (!loaded) {
        note_error(error);
        failed_batches.fetch_add(1, std::memory_order_relaxed);
        if (!lane->waiting.empty()) mark_hole(*lane, lane->waiting.begin()->first, acks);
        continue;
      }
      if (lane->hole && *lane->hole < *lane->next) {
        // The refused seq was already in the file: a duplicate, not a gap.
        lane->hole.reset();
        --lanes_with_hole;
      }
      drop_stale(*lane, acks);
    }

    for (auto& [id, lane] : touched) {
      lane->touched = false;
      if (!lane->next) continue;
      std::int64_t expected = *lane->next;
      while (!lane->waiting.empty() && lane->waiting.begin()->first == expected &&
             (!lane->hole || expected < *lane->hole)) {
        Waiting::node_type node = lane->waiting.extract(lane->waiting.begin());
        batch.push_back(std::move(node.mapped()));
        recycle(std::move(node));
        ++expected;
      }
    }
    touched.clear();

    if (!batch.empty()) commit(batch, acks);
    batch.clear();
    // Unhealthy while any activity has a hole: its later draws cannot be recorded.
    is_healthy.store(lanes_with_hole == 0, std::memory_order_relaxed);
    fire(acks);
  }

  void commit(std::vector<Item>& batch, Acks& acks) {
    std::vector<char>& rejected = round_rejected;
    rejected.resize(batch.size());
    std::string error;
    bool done = false;
    for (int attempt = 0; attempt < std::max(1, options.commit_attempts) && !done; ++attempt) {
      if (attempt > 0) backoff(attempt - 1);
      const auto begun = SteadyClock::now();
      done = commit_attempt(batch, rejected, error);
      if (done) {
        last_commit_seconds.store(std::chrono::duration<double>(SteadyClock::now() - begun).count(),
                                  std::memory_order_relaxed);
      }
    }

    if (!done) {
      // Those rows are not in the file and never will be: each activity of
      // the batch now has a hole at its first row here.
      note_error(error);
      failed_batches.fetch_add(1, std::memory_order_relaxed);
      for (Item& item : batch) {
        Lane& lane = lanes[item.record.activity_id];
        mark_hole(lane, item.record.seq, acks);
        refuse(item, acks);
      }
      return;
    }

    // Durable now: the COMMIT above returned, so every ack(true) below
    // describes a row that is in the file (on disk with synchronous=FULL).
    std::uint64_t rows = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Item& item = batch[i];
      Lane& lane = lanes[item.record.activity_id];
      if (rejected[i] != 0) {
        mark_hole(lane, item.record.seq, acks);
        refuse(item, acks);
        continue;
      }
      lane.next = item.record.seq + 1;
      acks.emplace_back(std::move(item.ack), true);
      ++rows;
    }
    committed_rows.fetch_add(rows, std::memory_order_relaxed);
    committed_batches.fetch_add(1, std::memory_order_relaxed);
  }

  void fire(Acks& acks) {
    for (auto& [ack, durable] : acks) {
      pending.fetch_sub(1, std::memory_order_relaxed);
      call_ack(ack, durable);
    }
    acks.clear();
  }

  // ---- reads ------------------------------------------------------------

  class Lease {
   public:
    Lease(Impl& impl, std::unique_ptr<Connection> conn) : impl_(&impl), conn_(std::move(conn)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() {
      if (!conn_ || discard_) return;
      std::lock_guard lock(impl_->read_mutex);
      if (impl_->idle_readers.size() < impl_->options.read_connections) {
        impl_->idle_readers.push_back(std::move(conn_));
      }
    }
    Connection& operator*() const { return *conn_; }
    void discard() { discard_ = true; }

   private:
    Impl* impl_;
    std::unique_ptr<Connection> conn_;
    bool discard_ = false;
  };

  Result<Lease> acquire() {
    {
      std::lock_guard lock(read_mutex);
      if (!idle_readers.empty()) {
        auto conn = std::move(idle_readers.back());
        idle_readers.pop_back();
        return Lease(*this, std::move(conn));
      }
    }
    auto conn = Connection::open(options.path, false, options.busy_timeout);
    if (!conn.ok()) return conn.error();
    return Lease(*this, std::move(conn.value()));
  }

  // Runs body(connection) on a pooled read connection; a connection that saw
  // an error is closed rather than reused.
  template <class T, class Body>
  Result<T> read(std::string_view what, Body&& body) {
    try {
      auto lease = acquire();
      if (!lease.ok())
        return make_error(ErrorKind::unavailable, std::string(what) + ": " + lease.error().detail);
      Result<T> result = body(**lease);
      if (!result.ok()) {
        lease->discard();
        if (result.error().kind == ErrorKind::unavailable) {
          return make_error(ErrorKind::unavailable,
                            std::string(what) + ": " + result.error().detail);
        }
      }
      return result;
    } catch (const std::exception& e) {
      return make_error(ErrorKind::internal, std::string(what) + ": " + e.what());
    } catch (...) {
      return make_error(ErrorKind::internal, std::string(what) + ": unexpected failure");
    }
  }

  // Runs body(connection) on the writer connection (save_*), in autocommit:
  // the statement is its own transaction, durable when it returns.
  Status write(std::string_view what, const std::function<Status(Connection&)>& body) {
    try {
      std::lock_guard lock(write_mutex);
      Status status = body(*writer);
      if (!status.ok()) {
        writer->rollback_if_open();
        return make_error(status.error().kind, std::string(what) + ": " + status.error().detail);
      }
      return status;
    } catch (const std::exception& e) {
      return make_error(ErrorKind::internal, std::string(what) + ": " + e.what());
    } catch (...) {
      return make_error(ErrorKind::internal, std::string(what) + ": unexpected failure");
    }
  }
};

// ---------------------------------------------------------------------------

SqliteSink::SqliteSink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SqliteSink::~SqliteSink() { flush_and_stop(); }

Result<std::unique_ptr<SqliteSink>> SqliteSink::open(SqliteSinkOptions options) {
  try {
    // Before this process's first SQLite call if SqliteSink is its first user
    // (otherwise SQLite keeps its own allocator): see sqlite_memory.hpp.
    install_sqlite_memory_slots();
    if (options.path.empty()) return make_error(ErrorKind::invalid_request, "SQLite path is empty");
    options.batch_max = std::max<std::size_t>(options.batch_max, 1);
    options.max_queue = std::max<std::size_t>(options.max_queue, 1);
    auto impl = std::make_unique<Impl>(std::move(options));
    if (auto opened = impl->open_writer(); !opened.ok()) return opened.error();
    Impl* raw = impl.get();
    raw->thread = std::thread([raw] {
      name_this_thread("fd-sqlite-write");
      raw->run();
    });
    return std::unique_ptr<SqliteSink>(new SqliteSink(std::move(impl)));
  } catch (const std::exception& e) {
    return make_error(ErrorKind::unavailable, std::string("opening the SQLite sink: ") + e.what());
  }
}

void SqliteSink::append(DrawRecord record, Ack ack) {
  impl_->append(std::move(record), std::move(ack));
}

void SqliteSink::flush_and_stop() {
  try {
    impl_->stop();
  } catch (...) {
    // join() can only throw on misuse that stop() already rules out.
  }
}

bool SqliteSink::healthy() const { return impl_->is_healthy.load(std::memory_order_relaxed); }

SinkStats SqliteSink::stats() const {
  SinkStats s;
  s.queue_depth = impl_->pending.load(std::memory_order_relaxed);
  s.committed_rows = impl_->committed_rows.load(std::memory_order_relaxed);
  s.committed_batches = impl_->committed_batches.load(std::memory_order_relaxed);
  s.failed_batches = impl_->failed_batches.load(std::memory_order_relaxed);
  s.last_commit_seconds = impl_->last_commit_seconds.load(std::memory_order_relaxed);
  const WalCheckpointStats wal = impl_->checkpointer->stats();
  s.wal_pages = wal.wal_pages;
  s.checkpoints_background = wal.background_passes;
  s.checkpoints_writer = wal.writer_passes;
  s.checkpoint_writer_seconds_max = wal.writer_seconds_max;
  return s;
}

void SqliteSink::set_next_seq(std::string activity_id, std::int64_t next_seq) {
  try {
    impl_->set_next_seq(std::move(activity_id), next_seq);
  } catch (...) {
    impl_->note_error("set_next_seq: out of memory");
  }
}

std::string SqliteSink::last_error() const {
  std::lock_guard lock(impl_->error_mutex);
  return impl_->last_error;
}

Result<std::optional<DrawRecord>> SqliteSink::find_draw(std::string_view draw_id) {
  return impl_->read<std::optional<DrawRecord>>(
      "reading a draw", [&](Connection& c) -> Result<std::optional<DrawRecord>> {
        auto stmt = c.statement(kFindDraw);
        if (!stmt.ok()) return stmt.error();
        StatementScope scope(*stmt);
        bind_text(*stmt, 1, draw_id);
        std::optional<DrawRecord> found;
        auto ran =
            run_rows(c, *stmt, "reading a draw", [&](sqlite3_stmt* s) { found = read_draw(s); });
        if (!ran.ok()) return ran.error();
        return found;
      });
}

Result<std::optional<DrawRecord>> SqliteSink::find_by_idempotency_key(std::string_view activity_id,
                                                                      std::string_view key) {
  return impl_->read<std::optional<DrawRecord>>(
      "looking up an idempotency key", [&](Connection& c) -> Result<std::optional<DrawRecord>> {
        auto stmt = c.statement(kFindByKey);
        if (!stmt.ok()) return stmt.error();
        StatementScope scope(*stmt);
        bind_text(*stmt, 1, activity_id);
        bind_text(*stmt, 2, key);
        sqlite3_bind_int64(*stmt, 3, hash64(key));
        std::optional<DrawRecord> found;
        auto ran =
            run_rows(c, *stmt, "reading a draw", [&](sqlite3_stmt* s) { found = read_draw(s); });
        if (!ran.ok()) return ran.error();
        return found;
      });
}

Result<DrawPage> SqliteSink::activity_draws(std::string_view activity_id, std::int64_t after_seq,
                                            std::size_t limit) {
  if (limit == 0) return DrawPage{};
  return impl_->read<DrawPage>("reading the audit trail", [&](Connection& c) -> Result<DrawPage> {
    auto stmt = c.statement(kActivityDraws);
    if (!stmt.ok()) return stmt.error();
    StatementScope scope(*stmt);
    bind_text(*stmt, 1, activity_id);
    sqlite3_bind_int64(*stmt, 2, after_seq);
    sqlite3_bind_int64(*stmt, 3, to_i64(limit) + 1);  // one more tells whether a next page exists
    DrawPage page;
    bool more = false;
    auto ran = run_rows(c, *stmt, "reading draws", [&](sqlite3_stmt* s) {
      if (page.items.size() < limit) {
        page.items.push_back(read_draw(s));
      } else {
        more = true;
      }
    });
    if (!ran.ok()) return ran.error();
    if (more) page.next = std::to_string(page.items.back().seq);
    return page;
  });
}

Result<DrawPage> SqliteSink::user_draws(std::string_view user_id,
                                        std::optional<std::string_view> activity_id,
                                        std::optional<std::string_view> cursor, std::size_t limit) {
  std::optional<UserCursor> after;
  if (cursor) {
    try {
      after = decode_user_cursor(*cursor);
    } catch (...) {
      after.reset();
    }
    if (!after)
      return make_error(ErrorKind::invalid_request, "cursor: not a cursor this list returned");
  }
  if (limit == 0) return DrawPage{};
  return impl_->read<DrawPage>("reading a user's draws", [&](Connection& c) -> Result<DrawPage> {
    auto stmt = c.statement(after ? kUserDrawsAfter : kUserDrawsFirst);
    if (!stmt.ok()) return stmt.error();
    StatementScope scope(*stmt);
    bind_text(*stmt, 1, user_id);
    if (activity_id) {
      bind_text(*stmt, 2, *activity_id);
    } else {
      sqlite3_bind_null(*stmt, 2);
    }
    sqlite3_bind_int64(*stmt, 3, to_i64(limit) + 1);
    sqlite3_bind_int64(*stmt, 7, hash64(user_id));
    if (after) {
      sqlite3_bind_int64(*stmt, 4, after->drawn_at_ms);
      sqlite3_bind_int64(*stmt, 5, after->seq);
      bind_text(*stmt, 6, after->draw_id);
    }
    DrawPage page;
    bool more = false;
    auto ran = run_rows(c, *stmt, "reading draws", [&](sqlite3_stmt* s) {
      if (page.items.size() < limit) {
        page.items.push_back(read_draw(s));
      } else {
        more = true;
      }
    });
    if (!ran.ok()) return ran.error();
    if (more) page.next = encode_user_cursor(page.items.back());
    return page;
  });
}

Result<std::vector<DrawRecord>> SqliteSink::draws_since(std::string_view activity_id,
                                                        std::int64_t since_ms, std::size_t limit) {
  if (limit == 0) return std::vector<DrawRecord>{};
  return impl_->read<std::vector<DrawRecord>>(
      "reading recent draws", [&](Connection& c) -> Result<std::vector<DrawRecord>> {
        auto stmt = c.statement(kDrawsSince);
        if (!stmt.ok()) return stmt.error();
        StatementScope scope(*stmt);
        bind_text(*stmt, 1, activity_id);
        sqlite3_bind_int64(*stmt, 2, since_ms);
        sqlite3_bind_int64(*stmt, 3, to_i64(limit));
        std::vector<DrawRecord> rows;
        auto ran = run_rows(c, *stmt, "reading draws",
                            [&](sqlite3_stmt* s) { rows.push_back(read_draw(s)); });
        if (!ran.ok()) return ran.error();
        return rows;
      });
}

Result<std::vector<std::pair<std::string, std::int64_t>>> SqliteSink::user_counts_since(
    std::string_view activity_id, std::int64_t since_ms) {
  using Counts = std::vector<std::pair<std::string, std::int64_t>>;
  return impl_->read<Counts>("counting draws per user", [&](Connection& c) -> Result<Counts> {
    auto stmt = c.statement(kUserCountsSince);
    if (!stmt.ok()) return stmt.error();
    StatementScope scope(*stmt);
    bind_text(*stmt, 1, activity_id);
    sqlite3_bind_int64(*stmt, 2, since_ms);
    Counts counts;
    auto ran = run_rows(c, *stmt, "counting draws", [&](sqlite3_stmt* s) {
      counts.emplace_back(column_string(s, 0), sqlite3_column_int64(s, 1));
    });
    if (!ran.ok()) return ran.error();
    return counts;
  });
}

Result<ActivityTotals> SqliteSink::load_totals(std::string_view activity_id, std::int64_t since_ms,
                                               const AddUserCounts& add) {
  // Below this many rows a second connection and thread cost more than they save.
  constexpr std::int64_t kMinRowsToSplit = 65536;
  struct Range {
    std::string_view sql;  // kTotalsByRowid or kTotalsBySeq
    std::int64_t first = 0;
    std::int64_t last = -1;
  };
  // The bounds are read first: rows are only ever appended (never updated or
  // deleted), so bounded ranges read from two connections see one consistent
  // record even if a row were committed meanwhile.
  auto planned = impl_->read<std::vector<Range>>(
      "planning the totals scan", [&](Connection& c) -> Result<std::vector<Range>> {
        auto max_seq = query_optional_i64(c, kMaxSeq, "reading MAX(seq)", [&](sqlite3_stmt* s) {
          bind_text(s, 1, activity_id);
        });
        if (!max_seq.ok()) return max_seq.error();
        if (!*max_seq) return std::vector<Range>{};
        auto max_rowid =
            query_optional_i64(c, kMaxRowid, "reading MAX(rowid)", [](sqlite3_stmt*) {});
        if (!max_rowid.ok()) return max_rowid.error();
        // An activity's seqs are 0..n-1, so MAX(seq) + 1 is its row count and
        // MAX(rowid) about the file's (rows are never deleted).
        const std::int64_t rows = **max_seq + 1;
        const std::int64_t table_rows = max_rowid->value_or(0);
        Range all = rows * 2 >= table_rows ? Range{kTotalsByRowid, 1, table_rows}
                                           : Range{kTotalsBySeq, 0, **max_seq};
        std::vector<Range> split{all};
        if (rows >= 2 * kMinRowsToSplit) {
          const std::int64_t middle = all.first + (all.last - all.first) / 2;
          split = {{all.sql, all.first, middle}, {all.sql, middle + 1, all.last}};
        }
        // Open below: nothing of the activity can sort before the first range.
        split.front().first = std::numeric_limits<std::int64_t>::min();
        return split;
      });
  if (!planned.ok()) return planned.error();
  const std::vector<Range>& ranges = planned.value();

  std::vector<TotalsPart> parts(ranges.size());
  auto scan = [&](std::size_t i) -> Status {
    return impl_->read<Ok>("loading totals", [&](Connection& c) -> Status {
      auto stmt = c.statement(ranges[i].sql);
      if (!stmt.ok()) return stmt.error();
      StatementScope scope(*stmt);
      bind_text(*stmt, 1, activity_id);
      sqlite3_bind_int64(*stmt, 2, ranges[i].first);
      sqlite3_bind_int64(*stmt, 3, ranges[i].last);
      return count_totals(c, *stmt, since_ms, add, parts[i]);
    });
  };
  // The second range on a thread of its own, with its own read connection
  // (a jthread: joined on every way out of this function).
  Status second = ok_status();
  std::jthread helper;
  if (ranges.size() > 1) {
    try {
      helper = std::jthread([&] {
        name_this_thread("fd-sqlite-load");
        try {
          second = scan(1);
        } catch (...) {
          second = make_error(ErrorKind::internal, "loading totals: unexpected failure");
        }
      });
    } catch (const std::system_error&) {
      second = scan(1);  // no thread to be had: one after the other
    }
  }
  Status first = ranges.empty() ? ok_status() : scan(0);
  if (helper.joinable()) helper.join();
  if (!first.ok()) return first.error();
  if (!second.ok()) return second.error();

  ActivityTotals totals;
  std::map<std::string, std::int64_t, std::less<>> wins;
  std::map<std::int64_t, std::int64_t> firsts;
  for (TotalsPart& part : parts) {
    totals.next_seq = std::max(totals.next_seq, part.max_seq + 1);
    for (auto& [prize, n] : part.wins) wins[prize] += n;
    for (const auto& [epoch, seq] : part.first_seq_by_epoch) {
      auto [it, inserted] = firsts.emplace(epoch, seq);
      if (!inserted) it->second = std::min(it->second, seq);
    }
  }
  totals.wins_by_prize.assign(wins.begin(), wins.end());
  totals.first_seq_by_epoch.assign(firsts.begin(), firsts.end());
  return totals;
}

Result<LiveDraws> SqliteSink::load_live_draws(std::string_view activity_id, std::int64_t since_ms,
                                              std::size_t limit, const OnDraw& on_draw) {
  return impl_->read<LiveDraws>("loading live draws", [&](Connection& c) -> Result<LiveDraws> {
    LiveDraws live;
    auto max_seq = query_optional_i64(c, kMaxSeq, "reading MAX(seq)", [&](sqlite3_stmt* s) {
      bind_text(s, 1, activity_id);
    });
    if (!max_seq.ok()) return max_seq.error();
    if (!*max_seq) return live;
    // The last `limit` seqs (drawn_at_ms follows seq closely but not exactly:
    // what is left out is reported, not guessed).
    const std::int64_t from = std::max<std::int64_t>(0, **max_seq + 1 - to_i64(limit));
    {
      auto stmt = c.statement(kLiveDraws);
      if (!stmt.ok()) return stmt.error();
      StatementScope scope(*stmt);
      bind_text(*stmt, 1, activity_id);
      sqlite3_bind_int64(*stmt, 2, from);
      sqlite3_bind_int64(*stmt, 3, since_ms);
      DrawRecord record;
      auto ran = run_rows(c, *stmt, "reading live draws", [&](sqlite3_stmt* s) {
        read_draw_into(s, record);
        on_draw(record);
        ++live.delivered;
      });
      if (!ran.ok()) return ran.error();
    }
    auto left_out =
        query_optional_i64(c, kNewestLiveBefore, "reading live draws", [&](sqlite3_stmt* s) {
          bind_text(s, 1, activity_id);
          sqlite3_bind_int64(s, 2, from);
          sqlite3_bind_int64(s, 3, since_ms);
        });
    if (!left_out.ok()) return left_out.error();
    live.newest_left_out_ms = *left_out;
    return live;
  });
}

Status SqliteSink::save_activity(const StoredActivity& activity) {
  return impl_->write("saving activity '" + activity.id + "'", [&](Connection& c) -> Status {
    auto stmt = c.statement(kSaveActivity);
    if (!stmt.ok()) return stmt.error();
    StatementScope scope(*stmt);
    bind_text(*stmt, 1, activity.id);
    bind_text(*stmt, 2, activity.config_json);
    sqlite3_bind_int(*stmt, 3, activity.ended ? 1 : 0);
    sqlite3_bind_int64(*stmt, 4, activity.created_at_ms);
    sqlite3_bind_int64(*stmt, 5, activity.updated_at_ms);
    if (sqlite3_step(*stmt) != SQLITE_DONE) return db_error("writing", c.db());
    return ok_status();
  });
}

Result<std::vector<StoredActivity>> SqliteSink::load_activities() {
  using Activities = std::vector<StoredActivity>;
  return impl_->read<Activities>("loading activities", [&](Connection& c) -> Result<Activities> {
    auto stmt = c.statement(kLoadActivities);
    if (!stmt.ok()) return stmt.error();
    StatementScope scope(*stmt);
    Activities activities;
    auto ran = run_rows(c, *stmt, "reading activities", [&](sqlite3_stmt* s) {
      StoredActivity a;
      a.id = column_string(s, 0);
      a.config_json = column_string(s, 1);
      a.ended = sqlite3_column_int64(s, 2) != 0;
      a.created_at_ms = sqlite3_column_int64(s, 3);
      a.updated_at_ms = sqlite3_column_int64(s, 4);
      activities.push_back(std::move(a));
    });
    if (!ran.ok()) return ran.error();
    return activities;
  });
}

Status SqliteSink::save_epoch(const EpochRecord& epoch) {
  const std::string what =
      "saving epoch " + std::to_string(epoch.epoch) + " of '" + epoch.activity_id + "'";
  if (epoch.epoch_size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return make_error(ErrorKind::internal, what + ": epoch_size out of range");
  }
  std::string prizes;
  try {
    prizes = prizes_to_json(epoch.prizes);
  } catch (const std::exception& e) {
    return make_error(ErrorKind::internal, what + ": " + e.what());
  }
  return impl_->write(what, [&](Connection& c) -> Status {
    auto stmt = c.statement(kSaveEpoch);
    if (!stmt.ok()) return stmt.error();
    StatementScope scope(*stmt);
    bind_text(*stmt, 1, epoch.activity_id);
    sqlite3_bind_int64(*stmt, 2, epoch.epoch);
    sqlite3_bind_blob(*stmt, 3, epoch.seed.data(), static_cast<int>(epoch.seed.size()), kStatic);
    bind_text(*stmt, 4, epoch.commitment);
    bind_text(*stmt, 5, prizes);
    sqlite3_bind_int64(*stmt, 6, epoch.miss_weight);
    sqlite3_bind_int64(*stmt, 7, static_cast<std::int64_t>(epoch.epoch_size));
    bind_optional(*stmt, 8, epoch.first_seq);
    bind_optional(*stmt, 9, epoch.revealed_at_ms);
    if (sqlite3_step(*stmt) != SQLITE_DONE) return db_error("writing", c.db());
    return ok_status();
  });
}

Result<std::vector<EpochRecord>> SqliteSink::load_epochs(std::string_view activity_id) {
  using Epochs = std::vector<EpochRecord>;
  return impl_->read<Epochs>("loading epochs", [&](Connection& c) -> Result<Epochs> {
    auto stmt = c.statement(kLoadEpochs);
    if (!stmt.ok()) return stmt.error();
    StatementScope scope(*stmt);
    bind_text(*stmt, 1, activity_id);
    Epochs epochs;
    std::optional<std::string> malformed;
    auto ran = run_rows(c, *stmt, "reading epochs", [&](sqlite3_stmt* s) {
      if (malformed) return;
      EpochRecord e;
      e.activity_id = column_string(s, 0);
      e.epoch = sqlite3_column_int64(s, 1);
      const std::string where = "epoch " + std::to_string(e.epoch) + " of '" + e.activity_id + "'";
      const void* seed = sqlite3_column_blob(s, 2);
      if (seed == nullptr || sqlite3_column_bytes(s, 2) != static_cast<int>(e.seed.size())) {
        malformed = where + " has a malformed seed";
        return;
      }
      std::memcpy(e.seed.data(), seed, e.seed.size());
      e.commitment = column_string(s, 3);
      auto prizes = prizes_from_json(column_string(s, 4));
      const std::int64_t miss = sqlite3_column_int64(s, 5);
      const std::int64_t size = sqlite3_column_int64(s, 6);
      if (!prizes || miss < 0 || miss > std::numeric_limits<std::uint32_t>::max() || size < 0) {
        malformed = where + " has malformed prizes or sizes";
        return;
      }
      e.prizes = std::move(*prizes);
      e.miss_weight = static_cast<std::uint32_t>(miss);
      e.epoch_size = static_cast<std::uint64_t>(size);
      e.first_seq = column_optional_i64(s, 7);
      e.revealed_at_ms = column_optional_i64(s, 8);
      epochs.push_back(std::move(e));
    });
    if (!ran.ok()) return ran.error();
    if (malformed) return make_error(ErrorKind::internal, *malformed);
    return epochs;
  });
}

}  // namespace fairdraw
