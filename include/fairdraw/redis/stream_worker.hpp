// StreamWorker: the clustered mode's persistence path. It moves every draw from the
// activities' Redis streams (`fd:{A}:stream`, written by RedisStore's draw script) to the
// Sink (PgSink), through one consumer group shared by all instances:
//
// - Discovery: the activities are the members of `fd:activities`; each stream gets the group
//   (XGROUP CREATE ... 0 MKSTREAM: entries added before the group existed are delivered too).
// - Rounds: XREADGROUP ... COUNT batch BLOCK block STREAMS ... > ... on a router of its own,
//   each entry converted to a DrawRecord and appended to the sink; an entry is XACKed only
//   after the sink's ack(true) (the row is committed). PgSink inserts ON CONFLICT (draw_id)
//   DO NOTHING, so a redelivered entry is harmless.
// - Sink down: entries the sink refuses (ack(false)) are kept and retried with a backoff,
//   and no new entry is read meanwhile: nothing is acked, the backlog stays in the stream
//   (its unread lag grows) and is written once the database is back.
// - Dead instances: every claim_interval, XAUTOCLAIM takes over entries pending for longer
//   than claim_idle (whoever they were delivered to) and persists them. Consumers with
//   nothing pending and idle for dead_consumer_idle are removed from the group.
// - Trimming: XTRIM MINID up to the group's oldest pending entry (or past its last delivered
//   entry when none is pending), computed and applied in one script: an entry that is
//   pending or not yet delivered is never trimmed.
// - A malformed entry (not a draw) is copied to `fd:{A}:stream:dead` and acked; a row the
//   database rejects outright (poison_after refusals while the sink stays healthy) is left
//   pending, logged and retried only when claimed again (it then holds the trim back).
//
// Threads: one thread of its own for the loop and one for its io_context (two RedisRouters,
// i.e. per master one connection for the reads and one for everything else). The trim and the
// lag figures (stats().streams) come from a pass every maintain_interval on the io thread, apart
// from the loop, so they stay live while a round waits for the sink. No call blocks a caller's thread
// except stop(). Sink acks run on the sink's thread and only touch the round they belong to.
// Redis Cluster: every command goes through a RedisRouter to the master of its key's slot;
// reads are split per slot (one XREADGROUP may not name streams of two slots).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fairdraw/redis/connection.hpp"
#include "fairdraw/sink/sink.hpp"

namespace fairdraw::redis {

enum class WorkerLogLevel { debug, info, warn, error };

struct StreamWorkerOptions {
  RedisOptions redis;
  std::string group = "fairdraw-persist";
  std::string consumer;  // this instance's name, unique among live instances (required)
  std::size_t batch = 512;         // XREADGROUP / XAUTOCLAIM COUNT, per stream
  std::size_t max_round = 8192;    // entries in flight to the sink at most (streams per read = max_round / batch)
  std::chrono::milliseconds block{200};  // XREADGROUP BLOCK (also bounds how late stop() is noticed)
  // Pause after a pass of non-blocking reads found nothing (Redis Cluster, or more streams
  // than one read takes): at most `block`.
  std::chrono::milliseconds poll{20};
  std::chrono::milliseconds claim_idle{30000};     // XAUTOCLAIM min-idle-time
  std::chrono::milliseconds claim_interval{5000};  // how often pending entries are looked at
  std::chrono::milliseconds discover_interval{1000};
  std::chrono::milliseconds maintain_interval{1000};  // trim and lag
  std::chrono::milliseconds retry_backoff_min{100};   // after a refusal by the sink, doubling…
  std::chrono::milliseconds retry_backoff_max{5000};  // …up to this
  std::chrono::milliseconds dead_consumer_idle{std::chrono::hours(1)};
  int poison_after = 3;  // refusals while the sink says it is healthy
  // Optional; called on the worker's threads (repeated Redis errors are rate-limited).
  std::function<void(WorkerLogLevel, std::string_view message, std::string_view detail)> log;
};

// One activity's stream as of the last maintenance pass (at most maintain_interval old, also
// while the worker waits for a sink that refuses).
struct StreamLag {
  std::string activity_id;
  std::int64_t pending = 0;  // delivered to a worker, not yet acked (not yet in the database)
  std::int64_t unread = 0;   // never delivered to any worker yet; -1 when Redis cannot tell
  std::int64_t length = 0;   // entries still in the stream (acked ones awaiting the trim included)
};

struct StreamWorkerStats {
  std::uint64_t read = 0;       // entries delivered by XREADGROUP
  std::uint64_t claimed = 0;    // entries taken over by XAUTOCLAIM
  std::uint64_t acked = 0;      // entries persisted and XACKed
  std::uint64_t refused = 0;    // sink refusals (each retried)
  std::uint64_t poisoned = 0;   // entries given up on until claimed again
  std::uint64_t dead_lettered = 0;
  std::uint64_t trimmed = 0;
  std::uint64_t redis_errors = 0;
  std::size_t retrying = 0;     // entries refused by the sink and waiting for the next attempt
  bool redis_ok = false;        // the last Redis call succeeded
  std::vector<StreamLag> streams;  // sorted by activity id
};

class StreamWorker {
 public:
  StreamWorker(StreamWorkerOptions options, Sink& sink);
  ~StreamWorker();  // stop()
  StreamWorker(const StreamWorker&) = delete;
  StreamWorker& operator=(const StreamWorker&) = delete;

  // Starts the threads. Once only.
  void start();
  // Stops reading; the round in progress is persisted and acked (waiting for the sink at
  // most `drain`), then the threads end. Entries not acked stay pending in Redis, for
  // another instance to claim. Idempotent.
  void stop(std::chrono::milliseconds drain = std::chrono::seconds(10));

  StreamWorkerStats stats() const;
  const StreamWorkerOptions& options() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// The consumer name of this process: host name, process id and random bits.
std::string default_consumer_name();

}  // namespace fairdraw::redis
