// PgSink: group commit of draws on one writer connection (idempotent by draw_id),
// reads and save_* on a small bounded pool, migrations under an advisory lock.
//
// Durability, in short:
// - A batch is one COPY draws FROM STDIN (on a failure below: one INSERT … SELECT
//   FROM unnest(arrays)), sent outside any BEGIN: the statement is its own
//   transaction, and its result arrives only after that transaction committed. Every session forces synchronous_commit = on, so a
//   committed batch is flushed to the server's WAL before the result is sent; only
//   then do its acks fire with true.
// - A failure leaves it unknown whether the COMMIT happened (the connection may
//   drop after it). The retry is safe anyway: rows already stored are skipped by
//   ON CONFLICT (draw_id) DO NOTHING, so a row is stored exactly once. That clause
//   costs the server a speculative insertion per row (an extra probe of the primary
//   key and an extra WAL record), so a batch goes first as a COPY, which has no such
//   clause: a row stored already (a retry, a redelivered stream entry) then fails
//   the whole statement with unique_violation, which rolls it back, and the batch
//   goes again as an INSERT with the clause.
// - Rows are inserted in append order; nothing here reorders or holds rows back
//   (the clustered store assigns seqs, the stream delivers them).
#include "fairdraw/sink/pg_sink.hpp"

#include "fairdraw/sink/sink_common.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <exception>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "fairdraw/engine/deck.hpp"
#include "fairdraw/sink/migrations.hpp"
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

// Any 64-bit key shared by every fairdraw instance: "fairdraw" in ASCII.
constexpr std::string_view kMigrationLockKey = "7377010967079960951";

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t to_i64(std::size_t n) {
  return n > static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max() - 1)
             ? std::numeric_limits<std::int64_t>::max() - 1
             : static_cast<std::int64_t>(n);
}

std::optional<std::int64_t> parse_i64(std::string_view digits) {
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc{} || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

// One line, no trailing newline: libpq messages end in "\n" and may span lines
// (continuation lines start with a tab).
std::string one_line(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  for (char c : message) {
    if (c == '\n' || c == '\r' || c == '\t') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

void replace_all(std::string& text, std::string_view secret) {
  if (secret.empty()) return;
  for (std::size_t at = text.find(secret); at != std::string::npos;
       at = text.find(secret, at + 3)) {
    text.replace(at, secret.size(), "***");
  }
}

std::string percent_decode(std::string_view in) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && hex(in[i + 1]) >= 0 && hex(in[i + 2]) >= 0) {
      out += static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2]));
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

// The password as written in a URI (user:password@host), for scrubbing messages
// about a URL libpq could not parse.
std::string raw_uri_password(std::string_view url) {
  const std::size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return {};
  const std::string_view rest = url.substr(scheme + 3);
  const std::size_t at = rest.find('@');
  if (at == std::string_view::npos) return {};
  const std::string_view userinfo = rest.substr(0, at);
  const std::size_t colon = userinfo.find(':');
  if (colon == std::string_view::npos) return {};
  return std::string(userinfo.substr(colon + 1));
}

std::string seed_to_hex(const Seed& seed) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(seed.size() * 2);
  for (std::uint8_t b : seed) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xf];
  }
  return out;
}

std::optional<Seed> seed_from_text(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Seed seed{};
  if (hex.size() != seed.size() * 2) return std::nullopt;
  for (std::size_t i = 0; i < seed.size(); ++i) {
    const int hi = nibble(hex[2 * i]);
    const int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    seed[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return seed;
}

// ---- connection settings ----------------------------------------------------

// What every connection of one sink is opened with, parsed once from the URL.
struct ConnSettings {
  std::vector<std::string> keywords;
  std::vector<std::string> values;
  std::string where;                  // "host:port/dbname", safe for messages
  std::vector<std::string> secrets;   // the password, raw and decoded: scrubbed from messages
  std::string statement_timeout_ms;

  std::string scrub(std::string message) const {
    for (const std::string& s : secrets) replace_all(message, s);
    return message;
  }
};

Result<std::shared_ptr<const ConnSettings>> make_settings(const PgSinkOptions& options) {
  auto settings = std::make_shared<ConnSettings>();
  if (std::string raw = raw_uri_password(options.url); !raw.empty()) {
    settings->secrets.push_back(percent_decode(raw));
    settings->secrets.push_back(std::move(raw));
  }
  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(options.url.c_str(), &parse_error);
  if (parsed == nullptr) {
    std::string message = parse_error != nullptr ? one_line(parse_error) : "out of memory";
    PQfreemem(parse_error);
    return make_error(ErrorKind::invalid_request,
                      "database URL is not a valid PostgreSQL connection string: " +
                          settings->scrub(std::move(message)));
  }
  std::set<std::string> given;
  std::string host;
  std::string port;
  std::string dbname;
  std::string user;
  for (const PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string keyword = o->keyword;
    given.insert(keyword);
    if (keyword == "host" || (keyword == "hostaddr" && host.empty())) host = o->val;
    if (keyword == "port") port = o->val;
    if (keyword == "dbname") dbname = o->val;
    if (keyword == "user") user = o->val;
    if (keyword == "password" && o->val[0] != '\0') settings->secrets.emplace_back(o->val);
  }
  PQconninfoFree(parsed);
  settings->where = (host.empty() ? std::string("localhost") : host) + ":" +
                    (port.empty() ? std::string("5432") : port) + "/" +
                    (dbname.empty() ? user : dbname);
  // Longest first, so a secret that contains another is replaced whole.
  std::sort(settings->secrets.begin(), settings->secrets.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });

  const auto timeout_ms = std::max<std::int64_t>(options.connect_timeout.count(), 1);
  const auto keepalive_bound =
      std::max<std::int64_t>(options.statement_timeout.count(), 0) + timeout_ms + 10000;
  auto add = [&](const char* keyword, std::string value, bool unless_given) {
    if (unless_given && given.count(keyword) != 0) return;
    settings->keywords.emplace_back(keyword);
    settings->values.push_back(std::move(value));
  };
  // expand_dbname: the URL is expanded in place of "dbname"; later keywords win.
  add("dbname", options.url, false);
  add("connect_timeout", std::to_string((timeout_ms + 999) / 1000), false);
  add("client_encoding", "UTF8", false);
  add("application_name", options.application_name, true);
  // A peer that vanishes without closing (power loss, partition) is detected
  // within a bounded time rather than after TCP's default of minutes.
  add("keepalives", "1", true);
  add("keepalives_idle", "10", true);
  add("keepalives_interval", "5", true);
  add("keepalives_count", "3", true);
  add("tcp_user_timeout", std::to_string(keepalive_bound), true);
  settings->statement_timeout_ms = std::to_string(std::max<std::int64_t>(
      options.statement_timeout.count(), 0));
  return std::shared_ptr<const ConnSettings>(std::move(settings));
}

// ---- one connection -----------------------------------------------------------

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// The outcome of one statement.
struct Reply {
  ResultPtr result;      // set on success
  std::string error;     // set on failure, password scrubbed
  std::string sqlstate;  // empty when the failure is client-side (e.g. the connection dropped)

  bool ok() const { return result != nullptr; }
  // The database refused these values (class 22 data exception, 23 integrity
  // constraint): retrying the same row can never succeed.
  bool rejected_data() const {
    return sqlstate.size() == 5 && (sqlstate.starts_with("22") || sqlstate.starts_with("23"));
  }
  int rows() const { return result ? PQntuples(result.get()) : 0; }
  bool is_null(int row, int col) const { return PQgetisnull(result.get(), row, col) != 0; }
  std::string text(int row, int col) const {
    return std::string(PQgetvalue(result.get(), row, col),
                       static_cast<std::size_t>(PQgetlength(result.get(), row, col)));
  }
  std::optional<std::string> optional_text(int row, int col) const {
    if (is_null(row, col)) return std::nullopt;
    return text(row, col);
  }
  std::int64_t i64(int row, int col) const {
    return parse_i64(text(row, col)).value_or(0);
  }
  std::optional<std::int64_t> optional_i64(int row, int col) const {
    if (is_null(row, col)) return std::nullopt;
    return parse_i64(text(row, col));
  }
  bool boolean(int row, int col) const { return text(row, col) == "t"; }
};

// Text-format parameters; std::nullopt is SQL NULL.
using Params = std::vector<std::optional<std::string>>;

// One libpq connection, used by one thread at a time.
class PgConn {
 public:
  static Result<std::unique_ptr<PgConn>> connect(std::shared_ptr<const ConnSettings> settings) {
    std::vector<const char*> keywords;
    std::vector<const char*> values;
    for (std::size_t i = 0; i < settings->keywords.size(); ++i) {
      keywords.push_back(settings->keywords[i].c_str());
      values.push_back(settings->values[i].c_str());
    }
    keywords.push_back(nullptr);
    values.push_back(nullptr);
    PGconn* raw = PQconnectdbParams(keywords.data(), values.data(), 1);
    auto conn = std::unique_ptr<PgConn>(new PgConn(raw, settings));
    const std::string label = "connecting to postgresql at " + settings->where;
    if (raw == nullptr) return make_error(ErrorKind::unavailable, label + ": out of memory");
    if (PQstatus(raw) != CONNECTION_OK) {
      return make_error(ErrorKind::unavailable,
                        label + ": " + settings->scrub(one_line(PQerrorMessage(raw))));
    }
    // libpq prints server notices ("relation … already exists, skipping") to
    // stderr by default; the service's logs are JSON lines, so they are dropped.
    PQsetNoticeProcessor(raw, [](void*, const char*) {}, nullptr);
    // Acks promise durability: a commit must reach the server's WAL on disk
    // before it returns, whatever the server's or role's default says.
    Reply set = conn->exec(
        "SELECT set_config('statement_timeout', $1, false),"
        " set_config('synchronous_commit', 'on', false)",
        {settings->statement_timeout_ms});
    if (!set.ok()) return make_error(ErrorKind::unavailable, label + ": " + set.error);
    return conn;
  }

  ~PgConn() { PQfinish(conn_); }
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;

  bool ok() const { return PQstatus(conn_) == CONNECTION_OK; }
  bool idle() const { return PQtransactionStatus(conn_) == PQTRANS_IDLE; }
  const ConnSettings& settings() const { return *settings_; }

  Reply exec(const char* sql, const Params& params = {}) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
    Reply reply;
    ResultPtr result(PQexecParams(conn_, sql, static_cast<int>(values.size()), nullptr,
                                  values.data(), nullptr, nullptr, 0));
    const ExecStatusType status =
        result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
      reply.result = std::move(result);
      return reply;
    }
    fail(reply, result.get());
    return reply;
  }

  // Several statements in one string, no parameters (migrations only: their SQL
  // is part of the build, never built from values).
  Reply exec_script(const std::string& sql) {
    Reply reply;
    ResultPtr result(PQexec(conn_, sql.c_str()));
    const ExecStatusType status =
        result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
      reply.result = std::move(result);
      return reply;
    }
    fail(reply, result.get());
    return reply;
  }

  // One COPY … FROM STDIN statement fed `data` (text format): its own transaction, as a
  // statement outside BEGIN, committed when the reply comes.
  Reply copy_in(const char* sql, std::string_view data) {
    Reply reply;
    ResultPtr started(PQexec(conn_, sql));
    if (!started || PQresultStatus(started.get()) != PGRES_COPY_IN) {
      fail(reply, started.get());
      return reply;
    }
    bool sent = true;
    constexpr std::size_t kChunk = 1 << 20;
    for (std::size_t at = 0; sent && at < data.size(); at += kChunk) {
      const std::size_t n = std::min(kChunk, data.size() - at);
      sent = PQputCopyData(conn_, data.data() + at, static_cast<int>(n)) == 1;
    }
    // On a failed send the COPY is ended with an error, so the server rolls it back.
    PQputCopyEnd(conn_, sent ? nullptr : "fairdraw: sending the rows failed");
    ResultPtr result(PQgetResult(conn_));
    const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
    if (status == PGRES_COMMAND_OK && sent) {
      reply.result = std::move(result);
      return reply;
    }
    fail(reply, result.get());
    return reply;
  }

  void rollback_if_open() {
    if (ok() && !idle()) ResultPtr ignored(PQexec(conn_, "ROLLBACK"));
  }

 private:
  PgConn(PGconn* conn, std::shared_ptr<const ConnSettings> settings)
      : conn_(conn), settings_(std::move(settings)) {}

  void fail(Reply& reply, PGresult* result) {
    const char* message = result != nullptr ? PQresultErrorMessage(result) : "";
    if (message == nullptr || message[0] == '\0') message = PQerrorMessage(conn_);
    reply.error = settings_->scrub(one_line(message != nullptr ? message : "unknown error"));
    if (reply.error.empty()) reply.error = "unknown error";
    const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
    if (state != nullptr) reply.sqlstate = state;
  }

  PGconn* conn_;
  std::shared_ptr<const ConnSettings> settings_;
};

// ---- SQL ------------------------------------------------------------------------

#define FD_DRAW_COLUMNS                                                                        \
  "draw_id, activity_id, seq, epoch, slot, user_id, idempotency_key, candidate_id, prize_id, " \
  "prize_name, won, drawn_at_ms"

// One statement for any batch size: twelve arrays, zipped by unnest, in append order.
// kInsertDraws fails on a draw stored already; kInsertNewDraws skips it.
constexpr const char* kInsertDraws =
    "INSERT INTO draws (" FD_DRAW_COLUMNS
    ") SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],"
    " $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::boolean[], $12::bigint[])";
constexpr const char* kInsertNewDraws =
    "INSERT INTO draws (" FD_DRAW_COLUMNS
    ") SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],"
    " $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::boolean[], $12::bigint[])"
    " ON CONFLICT (draw_id) DO NOTHING";
// The first try of a batch: COPY is ~18 % cheaper for the server per row than the INSERT of
// unnested arrays (heap rows are written in groups, one WAL record per page; no array
// parsing), measured on the 5-index draws table. It fails as a whole on a stored draw
// (unique_violation) or a bad value, and then the INSERTs above take over.
constexpr const char* kCopyDraws = "COPY draws (" FD_DRAW_COLUMNS ") FROM STDIN";
constexpr std::string_view kUniqueViolation = "23505";
constexpr const char* kMaxSeq = "SELECT MAX(seq) FROM draws WHERE activity_id = $1";
constexpr const char* kFindDraw = "SELECT " FD_DRAW_COLUMNS " FROM draws WHERE draw_id = $1";
constexpr const char* kFindByKey =
    "SELECT " FD_DRAW_COLUMNS
    " FROM draws WHERE activity_id = $1 AND idempotency_key = $2 ORDER BY seq LIMIT 1";
constexpr const char* kActivityDraws =
    "SELECT " FD_DRAW_COLUMNS
    " FROM draws WHERE activity_id = $1 AND seq > $2::bigint ORDER BY seq LIMIT $3::bigint";
constexpr const char* kUserDrawsFirst =
    "SELECT " FD_DRAW_COLUMNS
    " FROM draws WHERE user_id = $1 AND ($2::text IS NULL OR activity_id = $2)"
    " ORDER BY drawn_at_ms DESC, seq DESC, draw_id DESC LIMIT $3::bigint";
constexpr const char* kUserDrawsAfter =
    "SELECT " FD_DRAW_COLUMNS
    " FROM draws WHERE user_id = $1 AND ($2::text IS NULL OR activity_id = $2)"
    " AND (drawn_at_ms, seq, draw_id) < ($4::bigint, $5::bigint, $6::text)"
    " ORDER BY drawn_at_ms DESC, seq DESC, draw_id DESC LIMIT $3::bigint";
constexpr const char* kDrawsSince =
    "SELECT * FROM (SELECT " FD_DRAW_COLUMNS
    " FROM draws WHERE activity_id = $1 AND drawn_at_ms >= $2::bigint"
    " ORDER BY drawn_at_ms DESC, seq DESC LIMIT $3::bigint) AS recent ORDER BY drawn_at_ms, seq";
constexpr const char* kUserCountsSince =
    "SELECT user_id, COUNT(*) FROM draws WHERE activity_id = $1 AND drawn_at_ms >= $2::bigint"
    " GROUP BY user_id ORDER BY user_id";
constexpr const char* kWinsByPrize =
    "SELECT prize_id, COUNT(*) FROM draws WHERE activity_id = $1 AND won"
    " AND prize_id IS NOT NULL GROUP BY prize_id ORDER BY prize_id";
// Per user: all draws, and those at or after $2 (today's, for the per-day quota).
constexpr const char* kDrawsByUser =
    "SELECT user_id, COUNT(*), COUNT(*) FILTER (WHERE drawn_at_ms >= $2::bigint) FROM draws"
    " WHERE activity_id = $1 GROUP BY user_id";
// Live idempotency keys: the last seqs, and the newest live draw before them.
constexpr const char* kLiveDraws =
    "SELECT " FD_DRAW_COLUMNS " FROM draws WHERE activity_id = $1 AND seq >= $2::bigint"
    " AND drawn_at_ms >= $3::bigint ORDER BY seq";
constexpr const char* kNewestLiveBefore =
    "SELECT MAX(drawn_at_ms) FROM draws WHERE activity_id = $1 AND seq < $2::bigint"
    " AND drawn_at_ms >= $3::bigint";
constexpr const char* kFirstSeqByEpoch =
    "SELECT epoch, MIN(seq) FROM draws WHERE activity_id = $1 GROUP BY epoch ORDER BY epoch";
constexpr const char* kSaveActivity =
    "INSERT INTO activities (id, config_json, ended, created_at_ms, updated_at_ms)"
    " VALUES ($1, $2, $3::boolean, $4::bigint, $5::bigint) ON CONFLICT (id) DO UPDATE SET"
    " config_json = excluded.config_json, ended = excluded.ended,"
    " created_at_ms = excluded.created_at_ms, updated_at_ms = excluded.updated_at_ms";
constexpr const char* kLoadActivities =
    "SELECT id, config_json, ended, created_at_ms, updated_at_ms FROM activities"
    " ORDER BY created_at_ms, id";
constexpr const char* kSaveEpoch =
    "INSERT INTO epochs (activity_id, epoch, seed, commitment, prizes_json, miss_weight,"
    " epoch_size, first_seq, revealed_at) VALUES ($1, $2::bigint, decode($3, 'hex'), $4, $5,"
    " $6::bigint, $7::bigint, $8::bigint, $9::bigint)"
    " ON CONFLICT (activity_id, epoch) DO UPDATE SET seed = excluded.seed,"
    " commitment = excluded.commitment, prizes_json = excluded.prizes_json,"
    " miss_weight = excluded.miss_weight, epoch_size = excluded.epoch_size,"
    " first_seq = excluded.first_seq, revealed_at = excluded.revealed_at";
// An epoch as the public sees it: a NULL seed (not revealed) never replaces a stored one.
constexpr const char* kSavePublicEpoch =
    "INSERT INTO epochs (activity_id, epoch, seed, commitment, prizes_json, miss_weight,"
    " epoch_size, first_seq, revealed_at) VALUES ($1, $2::bigint, decode($3, 'hex'), $4, $5,"
    " $6::bigint, $7::bigint, $8::bigint, $9::bigint)"
    " ON CONFLICT (activity_id, epoch) DO UPDATE SET seed = COALESCE(excluded.seed, epochs.seed),"
    " commitment = excluded.commitment, prizes_json = excluded.prizes_json,"
    " miss_weight = excluded.miss_weight, epoch_size = excluded.epoch_size,"
    " first_seq = COALESCE(excluded.first_seq, epochs.first_seq),"
    " revealed_at = COALESCE(excluded.revealed_at, epochs.revealed_at)";
constexpr const char* kSaveActivityChange =
    "INSERT INTO activity_changes (activity_id, changed_at_ms, config_json, ended)"
    " VALUES ($1, $2::bigint, $3, $4::boolean) ON CONFLICT DO NOTHING";
constexpr const char* kLoadEpochs =
    "SELECT activity_id, epoch, encode(seed, 'hex'), commitment, prizes_json, miss_weight,"
    " epoch_size, first_seq, revealed_at FROM epochs WHERE activity_id = $1 ORDER BY epoch";

#undef FD_DRAW_COLUMNS

DrawRecord read_draw(const Reply& r, int row) {
  DrawRecord d;
  d.draw_id = r.text(row, 0);
  d.activity_id = r.text(row, 1);
  d.seq = r.i64(row, 2);
  d.epoch = r.i64(row, 3);
  d.slot = r.i64(row, 4);
  d.user_id = r.text(row, 5);
  d.idempotency_key = r.text(row, 6);
  d.candidate_id = r.optional_text(row, 7);
  d.prize_id = r.optional_text(row, 8);
  d.prize_name = r.optional_text(row, 9);
  d.won = r.boolean(row, 10);
  d.drawn_at_ms = r.i64(row, 11);
  return d;
}

// Array literals for unnest: every text element double-quoted (so NULL, empty
// strings and spaces survive), with '"' and '\' escaped.
class ArrayBuilder {
 public:
  void add_text(const std::string& v) {
    separate();
    out_ += '"';
    for (char c : v) {
      if (c == '"' || c == '\\') out_ += '\\';
      out_ += c;
    }
    out_ += '"';
  }
  void add_optional(const std::optional<std::string>& v) {
    if (v) return add_text(*v);
    separate();
    out_ += "NULL";
  }
  void add_int(std::int64_t v) {
    separate();
    out_ += std::to_string(v);
  }
  void add_bool(bool v) {
    separate();
    out_ += v ? 't' : 'f';
  }
  std::string finish() {
    out_ += '}';
    return std::move(out_);
  }

 private:
  void separate() {
    if (out_.size() > 1) out_ += ',';
  }
  std::string out_ = "{";
};

// Rows in COPY's text format: tab-separated, \N for NULL, backslash escapes for the
// characters the format gives a meaning (backslash, tab, newline, carriage return).
class CopyBuilder {
 public:
  void add_text(const std::string& v) {
    separate();
    for (char c : v) {
      switch (c) {
        case '\\': out_ += "\\\\"; break;
        case '\t': out_ += "\\t"; break;
        case '\n': out_ += "\\n"; break;
        case '\r': out_ += "\\r"; break;
        default: out_ += c;
      }
    }
  }
  void add_optional(const std::optional<std::string>& v) {
    if (v) return add_text(*v);
    separate();
    out_ += "\\N";
  }
  void add_int(std::int64_t v) {
    separate();
    std::array<char, 24> digits{};
    const auto end = std::to_chars(digits.data(), digits.data() + digits.size(), v).ptr;
    out_.append(digits.data(), end);
  }
  void add_bool(bool v) {
    separate();
    out_ += v ? 't' : 'f';
  }
  void end_row() {
    out_ += '\n';
    first_ = true;
  }
  std::string_view data() const { return out_; }

 private:
  void separate() {
    if (!first_) out_ += '\t';
    first_ = false;
  }
  std::string out_;
  bool first_ = true;
};

Error db_error(std::string_view what, const Reply& reply) {
  return make_error(ErrorKind::unavailable, std::string(what) + ": " + reply.error);
}

}  // namespace

// ---------------------------------------------------------------------------------

struct PgSink::Impl {
  struct Item {
    DrawRecord record;
    Ack ack;
  };
  explicit Impl(PgSinkOptions o) : options(std::move(o)) {}

  PgSinkOptions options;
  std::shared_ptr<const ConnSettings> settings;

  // Writer thread only (open() uses it before the thread starts).
  std::unique_ptr<PgConn> writer;
  SteadyClock::time_point writer_checked_at{};

  // The pool: at most options.read_connections connections, idle or leased.
  std::mutex pool_mutex;
  std::condition_variable pool_cv;
  std::vector<std::unique_ptr<PgConn>> idle;
  std::size_t pool_open = 0;

  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  std::deque<Item> queue;
  SteadyClock::time_point first_queued_at{};
  bool stopping = false;

  std::atomic<std::size_t> pending{0};
  std::atomic<std::uint64_t> committed_rows{0};
  std::atomic<std::uint64_t> committed_batches{0};
  std::atomic<std::uint64_t> failed_batches{0};
  std::atomic<double> last_commit_seconds{0};
  std::atomic<bool> is_healthy{false};
  mutable std::mutex error_mutex;
  std::string last_error;

  std::mutex stop_mutex;
  bool stopped = false;
  std::thread thread;

  void note_error(std::string message) {
    std::lock_guard lock(error_mutex);
    last_error = std::move(message);
  }

  // ---- open ---------------------------------------------------------------

  Status apply_migrations(PgConn& c) {
    const std::string lock_timeout = std::to_string(std::max<std::int64_t>(
        options.migration_timeout.count(), 1));
    Reply set = c.exec("SELECT set_config('statement_timeout', $1, false)", {lock_timeout});
    if (!set.ok()) return db_error("setting the migration timeout", set);
    // Instances starting together queue here; each migration is then applied
    // by whichever gets the lock first, and found applied by the others.
    Reply locked = c.exec("SELECT pg_advisory_lock($1::bigint)", {std::string(kMigrationLockKey)});
    if (!locked.ok()) return db_error("waiting for the migration lock", locked);
    Status status = apply_locked(c);
    Reply unlocked =
        c.exec("SELECT pg_advisory_unlock($1::bigint)", {std::string(kMigrationLockKey)});
    if (status.ok() && !unlocked.ok()) status = db_error("releasing the migration lock", unlocked);
    Reply reset = c.exec("SELECT set_config('statement_timeout', $1, false)",
                         {c.settings().statement_timeout_ms});
    if (status.ok() && !reset.ok()) status = db_error("setting the statement timeout", reset);
    return status;
  }

  Status apply_locked(PgConn& c) {
    Reply made = c.exec(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)");
    if (!made.ok()) return db_error("creating schema_migrations", made);
    Reply applied = c.exec("SELECT version FROM schema_migrations ORDER BY version");
    if (!applied.ok()) return db_error("reading schema_migrations", applied);
    std::set<std::int64_t> versions;
    for (int i = 0; i < applied.rows(); ++i) versions.insert(applied.i64(i, 0));

    const auto& known = postgres_migrations();
    const int newest_known = known.empty() ? 0 : known.back().version;
    if (!versions.empty() && *versions.rbegin() > newest_known) {
      return make_error(ErrorKind::unavailable,
                        "schema version " + std::to_string(*versions.rbegin()) +
                            " is newer than this build knows (" + std::to_string(newest_known) +
                            ")");
    }
    for (const Migration& m : known) {
      if (versions.count(m.version) != 0) continue;
      const std::string label = "migration " + std::string(m.name);
      // The schema change and its schema_migrations row commit together, or
      // neither does.
      Reply begun = c.exec("BEGIN");
      if (!begun.ok()) return db_error(label, begun);
      Reply ran = c.exec_script(std::string(m.sql));
      if (ran.ok()) {
        ran = c.exec("INSERT INTO schema_migrations (version, name, applied_at_ms)"
                     " VALUES ($1::integer, $2, $3::bigint)",
                     {std::to_string(m.version), std::string(m.name), std::to_string(wall_ms())});
      }
      if (ran.ok()) ran = c.exec("COMMIT");
      if (!ran.ok()) {
        c.rollback_if_open();
        return db_error(label, ran);
      }
    }
    return ok_status();
  }

  Status open() {
    auto conn = PgConn::connect(settings);
    if (!conn.ok()) return conn.error();
    if (auto migrated = apply_migrations(**conn); !migrated.ok()) {
      return make_error(migrated.error().kind,
                        "migrating postgresql at " + settings->where + ": " +
                            migrated.error().detail);
    }
    writer = std::move(conn.value());
    writer_checked_at = SteadyClock::now();
    is_healthy.store(true, std::memory_order_relaxed);
    return ok_status();
  }

  // ---- append side ----------------------------------------------------------

  void append(DrawRecord record, Ack ack) {
    Item item{std::move(record), std::move(ack)};
    bool queued = false;
    try {
      std::lock_guard lock(queue_mutex);
      if (!stopping && pending.load(std::memory_order_relaxed) < options.max_queue) {
        if (queue.empty()) first_queued_at = SteadyClock::now();
        queue.push_back(std::move(item));
        pending.fetch_add(1, std::memory_order_relaxed);
        queued = true;
      }
    } catch (...) {
      queued = false;
    }
    if (queued) {
      queue_cv.notify_one();
    } else {
      call_ack(item.ack, false);
    }
  }

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

  // ---- writer thread --------------------------------------------------------

  void run() {
    for (;;) {
      std::vector<Item> batch;
      {
        std::unique_lock lock(queue_mutex);
        const bool woke = queue_cv.wait_for(lock, options.health_check_interval,
                                            [&] { return stopping || !queue.empty(); });
        if (!woke) {
          lock.unlock();
          check_writer();
          continue;
        }
        if (queue.empty()) break;  // stopping, and drained
        if (options.max_batch_delay.count() > 0 && !stopping &&
            queue.size() < options.batch_max) {
          queue_cv.wait_until(lock, first_queued_at + options.max_batch_delay,
                              [&] { return stopping || queue.size() >= options.batch_max; });
        }
        const std::size_t n = std::min(queue.size(), options.batch_max);
        batch.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
          batch.push_back(std::move(queue.front()));
          queue.pop_front();
        }
        if (!queue.empty()) first_queued_at = SteadyClock::now();
      }
      try {
        commit(batch);
      } catch (const std::exception& e) {
        // Out of memory outside an attempt (bookkeeping): the rows of this batch
        // may go unacknowledged.
        is_healthy.store(false, std::memory_order_relaxed);
        note_error(std::string("writer: ") + e.what());
      }
    }
    writer.reset();
  }

  void backoff(int attempt) {
    auto delay = options.retry_backoff * (std::int64_t{1} << std::min(attempt, 16));
    delay = std::min(delay, options.max_retry_backoff);
    std::this_thread::sleep_for(std::max(delay, std::chrono::milliseconds(0)));
  }

  // A usable writer connection, reconnecting if the last one broke.
  bool ensure_writer(std::string& error) {
    if (writer && writer->ok()) return true;
    writer.reset();
    auto conn = PgConn::connect(settings);
    if (!conn.ok()) {
      error = conn.error().detail;
      return false;
    }
    writer = std::move(conn.value());
    return true;
  }

  // After a failed statement: a broken connection is dropped (the next attempt
  // reconnects) and health follows it.
  void after_failure() {
    if (writer && !writer->ok()) writer.reset();
    if (writer) writer->rollback_if_open();
    is_healthy.store(writer != nullptr, std::memory_order_relaxed);
  }

  // The idle writer's heartbeat: reconnects a lost connection, pings a live one.
  void check_writer() {
    if (SteadyClock::now() - writer_checked_at < options.health_check_interval) return;
    writer_checked_at = SteadyClock::now();
    try {
      std::string error;
      if (!writer || !writer->ok()) {
        const bool connected = ensure_writer(error);
        is_healthy.store(connected, std::memory_order_relaxed);
        if (!connected) note_error(error);
        return;
      }
      Reply ping = writer->exec("SELECT 1");
      if (ping.ok()) {
        is_healthy.store(true, std::memory_order_relaxed);
        return;
      }
      note_error("health check: " + ping.error);
      after_failure();
    } catch (const std::exception& e) {
      note_error(std::string("health check: ") + e.what());
    }
  }

  Reply insert(const std::vector<Item>& batch, const std::vector<std::size_t>& rows,
               bool skip_stored = true) {
    ArrayBuilder ids, activities, seqs, epochs, slots, users, keys, candidates, prizes, names,
        wons, times;
    for (std::size_t i : rows) {
      const DrawRecord& r = batch[i].record;
      ids.add_text(r.draw_id);
      activities.add_text(r.activity_id);
      seqs.add_int(r.seq);
      epochs.add_int(r.epoch);
      slots.add_int(r.slot);
      users.add_text(r.user_id);
      keys.add_text(r.idempotency_key);
      candidates.add_optional(r.candidate_id);
      prizes.add_optional(r.prize_id);
      names.add_optional(r.prize_name);
      wons.add_bool(r.won);
      times.add_int(r.drawn_at_ms);
    }
    return writer->exec(skip_stored ? kInsertNewDraws : kInsertDraws,
                        {ids.finish(), activities.finish(), seqs.finish(), epochs.finish(),
                         slots.finish(), users.finish(), keys.finish(), candidates.finish(),
                         prizes.finish(), names.finish(), wons.finish(), times.finish()});
  }

  Reply copy(const std::vector<Item>& batch, const std::vector<std::size_t>& rows) {
    CopyBuilder out;
    for (std::size_t i : rows) {
      const DrawRecord& r = batch[i].record;
      out.add_text(r.draw_id);
      out.add_text(r.activity_id);
      out.add_int(r.seq);
      out.add_int(r.epoch);
      out.add_int(r.slot);
      out.add_text(r.user_id);
      out.add_text(r.idempotency_key);
      out.add_optional(r.candidate_id);
      out.add_optional(r.prize_id);
      out.add_optional(r.prize_name);
      out.add_bool(r.won);
      out.add_int(r.drawn_at_ms);
      out.end_row();
    }
    return writer->copy_in(kCopyDraws, out.data());
  }

  enum class RowState : char { pending, stored, rejected };

  // One attempt at the pending rows. A batch the database rejects for its
  // values is split into single rows, so one bad row does not sink the others.
  bool attempt(std::vector<Item>& batch, std::vector<RowState>& state, std::string& error) {
    if (!ensure_writer(error)) return false;
    std::vector<std::size_t> rows;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (state[i] == RowState::pending) rows.push_back(i);
    }
    Reply whole = copy(batch, rows);
    if (!whole.ok() && whole.sqlstate == kUniqueViolation) whole = insert(batch, rows);
    if (whole.ok()) {
      for (std::size_t i : rows) state[i] = RowState::stored;
      return true;
    }
    if (!whole.rejected_data()) {
      error = "inserting " + std::to_string(rows.size()) + " draws: " + whole.error;
      return false;
    }
    for (std::size_t i : rows) {
      Reply one = insert(batch, {i});
      if (one.ok()) {
        state[i] = RowState::stored;
        continue;
      }
      const DrawRecord& r = batch[i].record;
      const std::string what =
          "draw " + r.draw_id + " (seq " + std::to_string(r.seq) + " of '" + r.activity_id + "')";
      if (!one.rejected_data()) {
        error = "inserting " + what + ": " + one.error;
        return false;
      }
      state[i] = RowState::rejected;
      note_error("refused " + what + ": " + one.error);
    }
    return true;
  }

  void commit(std::vector<Item>& batch) {
    std::vector<RowState> state(batch.size(), RowState::pending);
    std::string error;
    bool done = false;
    for (int attempt_no = 0; attempt_no < std::max(1, options.commit_attempts) && !done;
         ++attempt_no) {
      if (attempt_no > 0) backoff(attempt_no - 1);
      const auto begun = SteadyClock::now();
      try {
        done = attempt(batch, state, error);
      } catch (const std::exception& e) {
        // Out of memory while building the statement: a failed attempt like any
        // other, so every row still gets its ack below.
        done = false;
        error = std::string("writer: ") + e.what();
      }
      if (done) {
        last_commit_seconds.store(std::chrono::duration<double>(SteadyClock::now() - begun).count(),
                                  std::memory_order_relaxed);
        is_healthy.store(true, std::memory_order_relaxed);
        writer_checked_at = SteadyClock::now();
      } else {
        note_error(error);
        after_failure();
      }
    }
    if (!done) failed_batches.fetch_add(1, std::memory_order_relaxed);

    // Stored rows are committed (the statement returned): their acks say durable.
    // Rows still pending after the last attempt may or may not be stored; they are
    // refused, and the stream worker delivers them again (a stored one is then
    // skipped by ON CONFLICT).
    const auto rows = static_cast<std::uint64_t>(
        std::count(state.begin(), state.end(), RowState::stored));
    if (rows > 0) {
      committed_rows.fetch_add(rows, std::memory_order_relaxed);
      committed_batches.fetch_add(1, std::memory_order_relaxed);
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      pending.fetch_sub(1, std::memory_order_relaxed);
      call_ack(batch[i].ack, state[i] == RowState::stored);
    }
  }

  // ---- pool -----------------------------------------------------------------

  class Lease {
   public:
    Lease(Impl& impl, std::unique_ptr<PgConn> conn) : impl_(&impl), conn_(std::move(conn)) {}
    Lease(Lease&& other) noexcept
        : impl_(other.impl_), conn_(std::move(other.conn_)), fresh_(other.fresh_) {
      other.impl_ = nullptr;
    }
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() {
      if (impl_ != nullptr) impl_->release(std::move(conn_));
    }
    PgConn& operator*() const { return *conn_; }
    PgConn* operator->() const { return conn_.get(); }
    bool fresh() const { return fresh_; }
    void set_fresh() { fresh_ = true; }

   private:
    Impl* impl_;
    std::unique_ptr<PgConn> conn_;
    bool fresh_ = false;
  };

  // An idle pooled connection, or a new one while the pool has room; waits (bounded)
  // when every connection is leased.
  Result<Lease> acquire() {
    const std::size_t capacity = std::max<std::size_t>(options.read_connections, 1);
    {
      std::unique_lock lock(pool_mutex);
      const auto wait = options.connect_timeout + options.statement_timeout;
      if (!pool_cv.wait_for(lock, wait, [&] { return !idle.empty() || pool_open < capacity; })) {
        return make_error(ErrorKind::unavailable,
                          "no database connection free within " + std::to_string(wait.count()) +
                              " ms (pool of " + std::to_string(capacity) + ")");
      }
      if (!idle.empty()) {
        auto conn = std::move(idle.back());
        idle.pop_back();
        return Lease(*this, std::move(conn));
      }
      ++pool_open;  // reserved before connecting, so the pool never overshoots
    }
    auto conn = PgConn::connect(settings);
    if (!conn.ok()) {
      {
        std::lock_guard lock(pool_mutex);
        --pool_open;
      }
      pool_cv.notify_one();
      return conn.error();
    }
    Lease lease(*this, std::move(conn.value()));
    lease.set_fresh();
    return lease;
  }

  void release(std::unique_ptr<PgConn> conn) {
    {
      std::lock_guard lock(pool_mutex);
      if (conn && conn->ok() && conn->idle()) {
        idle.push_back(std::move(conn));
      } else {
        --pool_open;
      }
    }
    pool_cv.notify_one();
    // A broken connection (if any) is closed here, outside the lock.
  }

  // Closes every idle connection: one was found dead, so the server went away
  // and the others are most likely dead too.
  void drop_idle() {
    std::vector<std::unique_ptr<PgConn>> dead;
    {
      std::lock_guard lock(pool_mutex);
      dead.swap(idle);
      pool_open -= dead.size();
    }
    pool_cv.notify_all();
  }

  // Runs body(connection) on a pooled connection. A pooled connection may have
  // died while idle (the database restarted): then the body runs once more on a
  // fresh one. Bodies are reads or idempotent upserts, so running twice is safe.
  template <class T, class Body>
  Result<T> with_connection(std::string_view what, Body&& body) {
    try {
      for (int round = 0;; ++round) {
        auto lease = acquire();
        if (!lease.ok()) {
          return make_error(ErrorKind::unavailable,
                            std::string(what) + ": " + lease.error().detail);
        }
        Result<T> result = body(**lease);
        if (result.ok()) return result;
        const bool lost = !(*lease)->ok();
        (*lease)->rollback_if_open();
        if (lost && !lease->fresh() && round == 0) {
          drop_idle();
          continue;
        }
        return make_error(result.error().kind, std::string(what) + ": " + result.error().detail);
      }
    } catch (const std::exception& e) {
      return make_error(ErrorKind::internal, std::string(what) + ": " + e.what());
    } catch (...) {
      return make_error(ErrorKind::internal, std::string(what) + ": unexpected failure");
    }
  }

  Result<std::vector<DrawRecord>> query_draws(PgConn& c, const char* sql, const Params& params) {
    Reply reply = c.exec(sql, params);
    if (!reply.ok()) return db_error("reading draws", reply);
    std::vector<DrawRecord> rows;
    rows.reserve(static_cast<std::size_t>(reply.rows()));
    for (int i = 0; i < reply.rows(); ++i) rows.push_back(read_draw(reply, i));
    return rows;
  }

  Result<std::vector<std::pair<std::string, std::int64_t>>> query_counts(PgConn& c,
                                                                         const char* sql,
                                                                         const Params& params) {
    Reply reply = c.exec(sql, params);
    if (!reply.ok()) return db_error("counting draws", reply);
    std::vector<std::pair<std::string, std::int64_t>> counts;
    counts.reserve(static_cast<std::size_t>(reply.rows()));
    for (int i = 0; i < reply.rows(); ++i) counts.emplace_back(reply.text(i, 0), reply.i64(i, 1));
    return counts;
  }

  // One epoch row by `sql` (kSaveEpoch or kSavePublicEpoch, same parameters). Without
  // `with_seed` (an unrevealed public epoch) the seed and revealed_at_ms are written as NULL.
  Status save_epoch_row(const char* sql, const std::string& what, const EpochRecord& epoch,
                        bool with_seed) {
    if (epoch.epoch_size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return make_error(ErrorKind::internal, what + ": epoch_size out of range");
    }
    std::string prizes;
    std::optional<std::string> seed;
    try {
      prizes = prizes_to_json(epoch.prizes);
      if (with_seed) seed = seed_to_hex(epoch.seed);
    } catch (const std::exception& e) {
      return make_error(ErrorKind::internal, what + ": " + e.what());
    }
    auto optional_int = [](const std::optional<std::int64_t>& v) -> std::optional<std::string> {
      if (!v) return std::nullopt;
      return std::to_string(*v);
    };
    return with_connection<Ok>(what, [&](PgConn& c) -> Status {
      Reply saved = c.exec(sql, {epoch.activity_id, std::to_string(epoch.epoch), seed, epoch.commitment,
                                 prizes, std::to_string(epoch.miss_weight), std::to_string(epoch.epoch_size),
                                 optional_int(epoch.first_seq),
                                 with_seed ? optional_int(epoch.revealed_at_ms) : std::nullopt});
      if (!saved.ok()) return db_error("writing", saved);
      return ok_status();
    });
  }

  ~Impl() {
    // The writer thread is joined by flush_and_stop before this runs.
    std::lock_guard lock(pool_mutex);
    idle.clear();
  }
};

// ---------------------------------------------------------------------------------

PgSink::PgSink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

PgSink::~PgSink() { flush_and_stop(); }

Result<std::unique_ptr<PgSink>> PgSink::open(PgSinkOptions options) {
  try {
    if (options.url.empty()) return make_error(ErrorKind::invalid_request, "database URL is empty");
    options.batch_max = std::max<std::size_t>(options.batch_max, 1);
    options.max_queue = std::max<std::size_t>(options.max_queue, 1);
    options.health_check_interval =
        std::max(options.health_check_interval, std::chrono::milliseconds(10));
    auto settings = make_settings(options);
    if (!settings.ok()) return settings.error();
    auto impl = std::make_unique<Impl>(std::move(options));
    impl->settings = std::move(settings.value());
    if (auto opened = impl->open(); !opened.ok()) return opened.error();
    Impl* raw = impl.get();
    raw->thread = std::thread([raw] {
      name_this_thread("fd-pg-write");
      raw->run();
    });
    return std::unique_ptr<PgSink>(new PgSink(std::move(impl)));
  } catch (const std::exception& e) {
    return make_error(ErrorKind::unavailable,
                      std::string("opening the PostgreSQL sink: ") + e.what());
  }
}

void PgSink::append(DrawRecord record, Ack ack) {
  impl_->append(std::move(record), std::move(ack));
}

void PgSink::flush_and_stop() {
  try {
    impl_->stop();
  } catch (...) {
    // join() can only throw on misuse that stop() already rules out.
  }
}

bool PgSink::healthy() const { return impl_->is_healthy.load(std::memory_order_relaxed); }

SinkStats PgSink::stats() const {
  SinkStats s;
  s.queue_depth = impl_->pending.load(std::memory_order_relaxed);
  s.committed_rows = impl_->committed_rows.load(std::memory_order_relaxed);
  s.committed_batches = impl_->committed_batches.load(std::memory_order_relaxed);
  s.failed_batches = impl_->failed_batches.load(std::memory_order_relaxed);
  s.last_commit_seconds = impl_->last_commit_seconds.load(std::memory_order_relaxed);
  return s;
}

std::string PgSink::last_error() const {
  std::lock_guard lock(impl_->error_mutex);
  return impl_->last_error;
}

Result<std::optional<DrawRecord>> PgSink::find_draw(std::string_view draw_id) {
  using Found = std::optional<DrawRecord>;
  return impl_->with_connection<Found>("reading a draw", [&](PgConn& c) -> Result<Found> {
    auto rows = impl_->query_draws(c, kFindDraw, {std::string(draw_id)});
    if (!rows.ok()) return rows.error();
    if (rows->empty()) return Found{};
    return Found(std::move(rows->front()));
  });
}

Result<std::optional<DrawRecord>> PgSink::find_by_idempotency_key(std::string_view activity_id,
                                                                  std::string_view key) {
  using Found = std::optional<DrawRecord>;
  return impl_->with_connection<Found>(
      "looking up an idempotency key", [&](PgConn& c) -> Result<Found> {
        auto rows =
            impl_->query_draws(c, kFindByKey, {std::string(activity_id), std::string(key)});
        if (!rows.ok()) return rows.error();
        if (rows->empty()) return Found{};
        return Found(std::move(rows->front()));
      });
}

Result<DrawPage> PgSink::activity_draws(std::string_view activity_id, std::int64_t after_seq,
                                        std::size_t limit) {
  if (limit == 0) return DrawPage{};
  return impl_->with_connection<DrawPage>(
      "reading the audit trail", [&](PgConn& c) -> Result<DrawPage> {
        // One more row than asked tells whether a next page exists.
        auto rows = impl_->query_draws(
            c, kActivityDraws,
            {std::string(activity_id), std::to_string(after_seq), std::to_string(to_i64(limit) + 1)});
        if (!rows.ok()) return rows.error();
        DrawPage page;
        const bool more = rows->size() > limit;
        if (more) rows->resize(limit);
        page.items = std::move(rows.value());
        if (more) page.next = std::to_string(page.items.back().seq);
        return page;
      });
}

Result<DrawPage> PgSink::user_draws(std::string_view user_id,
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
  return impl_->with_connection<DrawPage>(
      "reading a user's draws", [&](PgConn& c) -> Result<DrawPage> {
        Params params{std::string(user_id),
                      activity_id ? std::optional<std::string>(std::string(*activity_id))
                                  : std::nullopt,
                      std::to_string(to_i64(limit) + 1)};
        if (after) {
          params.emplace_back(std::to_string(after->drawn_at_ms));
          params.emplace_back(std::to_string(after->seq));
          params.emplace_back(after->draw_id);
        }
        auto rows = impl_->query_draws(c, after ? kUserDrawsAfter : kUserDrawsFirst, params);
        if (!rows.ok()) return rows.error();
        DrawPage page;
        const bool more = rows->size() > limit;
        if (more) rows->resize(limit);
        page.items = std::move(rows.value());
        if (more) page.next = encode_user_cursor(page.items.back());
        return page;
      });
}

Result<std::vector<DrawRecord>> PgSink::draws_since(std::string_view activity_id,
                                                    std::int64_t since_ms, std::size_t limit) {
  using Rows = std::vector<DrawRecord>;
  if (limit == 0) return Rows{};
  return impl_->with_connection<Rows>("reading recent draws", [&](PgConn& c) -> Result<Rows> {
    return impl_->query_draws(
        c, kDrawsSince,
        {std::string(activity_id), std::to_string(since_ms), std::to_string(to_i64(limit))});
  });
}

Result<std::vector<std::pair<std::string, std::int64_t>>> PgSink::user_counts_since(
    std::string_view activity_id, std::int64_t since_ms) {
  using Counts = std::vector<std::pair<std::string, std::int64_t>>;
  return impl_->with_connection<Counts>(
      "counting draws per user", [&](PgConn& c) -> Result<Counts> {
        return impl_->query_counts(c, kUserCountsSince,
                                   {std::string(activity_id), std::to_string(since_ms)});
      });
}

Result<ActivityTotals> PgSink::load_totals(std::string_view activity_id, std::int64_t since_ms,
                                           const AddUserCounts& add) {
  return impl_->with_connection<ActivityTotals>(
      "loading totals", [&](PgConn& c) -> Result<ActivityTotals> {
        // One snapshot: all four answers describe the same moment.
        Reply begun = c.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        if (!begun.ok()) return db_error("starting a read", begun);
        const Params id{std::string(activity_id)};
        ActivityTotals totals;
        Reply max_seq = c.exec(kMaxSeq, id);
        if (!max_seq.ok()) return db_error("reading totals", max_seq);
        totals.next_seq =
            max_seq.rows() == 0 || max_seq.is_null(0, 0) ? 0 : max_seq.i64(0, 0) + 1;
        auto wins = impl_->query_counts(c, kWinsByPrize, id);
        if (!wins.ok()) return wins.error();
        totals.wins_by_prize = std::move(wins.value());
        Reply users = c.exec(kDrawsByUser, {std::string(activity_id), std::to_string(since_ms)});
        if (!users.ok()) return db_error("reading totals", users);
        for (int i = 0; i < users.rows(); ++i) {
          add(users.text(i, 0), users.i64(i, 1), users.i64(i, 2));
        }
        Reply epochs = c.exec(kFirstSeqByEpoch, id);
        if (!epochs.ok()) return db_error("reading totals", epochs);
        for (int i = 0; i < epochs.rows(); ++i) {
          totals.first_seq_by_epoch.emplace_back(epochs.i64(i, 0), epochs.i64(i, 1));
        }
        Reply ended = c.exec("COMMIT");
        if (!ended.ok()) return db_error("ending a read", ended);
        return totals;
      });
}

Result<LiveDraws> PgSink::load_live_draws(std::string_view activity_id, std::int64_t since_ms,
                                          std::size_t limit, const OnDraw& on_draw) {
  return impl_->with_connection<LiveDraws>(
      "loading live draws", [&](PgConn& c) -> Result<LiveDraws> {
        // One snapshot, so that the two answers describe the same moment.
        Reply begun = c.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        if (!begun.ok()) return db_error("starting a read", begun);
        LiveDraws live;
        Reply max_seq = c.exec(kMaxSeq, {std::string(activity_id)});
        if (!max_seq.ok()) return db_error("reading live draws", max_seq);
        if (max_seq.rows() == 0 || max_seq.is_null(0, 0)) {
          Reply ended = c.exec("COMMIT");
          if (!ended.ok()) return db_error("ending a read", ended);
          return live;
        }
        const std::int64_t from = std::max<std::int64_t>(0, max_seq.i64(0, 0) + 1 - to_i64(limit));
        const Params params{std::string(activity_id), std::to_string(from),
                            std::to_string(since_ms)};
        Reply rows = c.exec(kLiveDraws, params);
        if (!rows.ok()) return db_error("reading live draws", rows);
        for (int i = 0; i < rows.rows(); ++i) {
          on_draw(read_draw(rows, i));
          ++live.delivered;
        }
        Reply left_out = c.exec(kNewestLiveBefore, params);
        if (!left_out.ok()) return db_error("reading live draws", left_out);
        if (left_out.rows() > 0 && !left_out.is_null(0, 0)) live.newest_left_out_ms = left_out.i64(0, 0);
        Reply ended = c.exec("COMMIT");
        if (!ended.ok()) return db_error("ending a read", ended);
        return live;
      });
}

Status PgSink::save_activity(const StoredActivity& activity) {
  return impl_->with_connection<Ok>(
      "saving activity '" + activity.id + "'", [&](PgConn& c) -> Status {
        // Autocommit: durable (synchronous_commit = on) when the statement returns.
        Reply saved = c.exec(kSaveActivity, {activity.id, activity.config_json,
                                             std::string(activity.ended ? "true" : "false"),
                                             std::to_string(activity.created_at_ms),
                                             std::to_string(activity.updated_at_ms)});
        if (!saved.ok()) return db_error("writing", saved);
        return ok_status();
      });
}

Result<std::vector<StoredActivity>> PgSink::load_activities() {
  using Activities = std::vector<StoredActivity>;
  return impl_->with_connection<Activities>(
      "loading activities", [&](PgConn& c) -> Result<Activities> {
        Reply reply = c.exec(kLoadActivities);
        if (!reply.ok()) return db_error("reading activities", reply);
        Activities activities;
        for (int i = 0; i < reply.rows(); ++i) {
          StoredActivity a;
          a.id = reply.text(i, 0);
          a.config_json = reply.text(i, 1);
          a.ended = reply.boolean(i, 2);
          a.created_at_ms = reply.optional_i64(i, 3).value_or(0);
          a.updated_at_ms = reply.optional_i64(i, 4).value_or(0);
          activities.push_back(std::move(a));
        }
        return activities;
      });
}

Status PgSink::save_epoch(const EpochRecord& epoch) {
  // Autocommit: the seed is durable before its commitment is ever published.
  return impl_->save_epoch_row(
      kSaveEpoch, "saving epoch " + std::to_string(epoch.epoch) + " of '" + epoch.activity_id + "'",
      epoch, /*with_seed=*/true);
}

Status PgSink::save_public_epoch(const EpochRecord& epoch, bool revealed) {
  return impl_->save_epoch_row(
      kSavePublicEpoch,
      "saving public epoch " + std::to_string(epoch.epoch) + " of '" + epoch.activity_id + "'", epoch,
      /*with_seed=*/revealed);
}

Status PgSink::save_activity_change(const StoredActivity& activity) {
  return impl_->with_connection<Ok>(
      "saving a change of activity '" + activity.id + "'", [&](PgConn& c) -> Status {
        Reply saved = c.exec(kSaveActivityChange, {activity.id, std::to_string(activity.updated_at_ms),
                                                   activity.config_json,
                                                   std::string(activity.ended ? "true" : "false")});
        if (!saved.ok()) return db_error("writing", saved);
        return ok_status();
      });
}

Result<std::vector<EpochRecord>> PgSink::load_epochs(std::string_view activity_id) {
  using Epochs = std::vector<EpochRecord>;
  return impl_->with_connection<Epochs>("loading epochs", [&](PgConn& c) -> Result<Epochs> {
    Reply reply = c.exec(kLoadEpochs, {std::string(activity_id)});
    if (!reply.ok()) return db_error("reading epochs", reply);
    Epochs epochs;
    for (int i = 0; i < reply.rows(); ++i) {
      EpochRecord e;
      e.activity_id = reply.text(i, 0);
      e.epoch = reply.i64(i, 1);
      const std::string where = "epoch " + std::to_string(e.epoch) + " of '" + e.activity_id + "'";
      // NULL: a clustered-mode copy of an epoch not yet revealed (the seed stays all zero).
      if (!reply.is_null(i, 2)) {
        auto seed = seed_from_text(reply.text(i, 2));
        if (!seed) return make_error(ErrorKind::internal, where + " has a malformed seed");
        e.seed = *seed;
      }
      e.commitment = reply.text(i, 3);
      auto prizes = prizes_from_json(reply.text(i, 4));
      const std::int64_t miss = reply.i64(i, 5);
      const std::int64_t size = reply.i64(i, 6);
      if (!prizes || miss < 0 || miss > std::numeric_limits<std::uint32_t>::max() || size < 0) {
        return make_error(ErrorKind::internal, where + " has malformed prizes or sizes");
      }
      e.prizes = std::move(*prizes);
      e.miss_weight = static_cast<std::uint32_t>(miss);
      e.epoch_size = static_cast<std::uint64_t>(size);
      e.first_seq = reply.optional_i64(i, 7);
      e.revealed_at_ms = reply.optional_i64(i, 8);
      epochs.push_back(std::move(e));
    }
    return epochs;
  });
}

}  // namespace fairdraw
