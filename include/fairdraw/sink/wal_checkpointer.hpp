// WalCheckpointer: copies a SQLite WAL back into its database file on a thread
// and connection of its own, so the writer's group commits do not stop for it.
//
// Why: with SQLite's automatic checkpoint the COMMIT that crosses the limit
// copies every page the WAL holds into the file and fsyncs it while every draw
// queued behind it waits (tens to hundreds of ms once random-keyed indexes are
// larger than the page cache). Here the long copy runs beside the writer.
//
// The WAL can only start again from its beginning (and so stay small) when a
// checkpoint has copied every frame in it and the writer then begins a write.
// Frames committed while a background pass runs are not in that pass, so once
// a pass leaves at most finish_pages behind, the writer is asked to run the
// last, short pass itself between two batches (finish_requested()): it is the
// only thread that adds frames, so its pass is complete and its next commit
// restarts the WAL. Should the WAL still grow to force_pages (a disk slower
// than the load, or readers pinning old frames), the writer checkpoints before
// its next batch as SQLite would (writer_must_checkpoint()), so the WAL file
// stays bounded whatever happens.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "fairdraw/result.hpp"

struct sqlite3;

namespace fairdraw {

struct WalCheckpointOptions {
  std::int64_t start_pages = 4000;   // a background pass starts once the WAL holds this many
  std::int64_t finish_pages = 1000;  // a pass leaving at most this many behind hands over
  std::int64_t force_pages = 32000;  // the writer checkpoints itself at this size
  bool full_sync = true;             // the writer's synchronous: FULL (true) or NORMAL
};

struct WalCheckpointStats {
  std::uint64_t background_passes = 0;
  std::uint64_t writer_passes = 0;       // short last passes and forced ones
  std::uint64_t forced_passes = 0;       // of writer_passes: the WAL reached force_pages
  std::uint64_t wal_restarts = 0;        // times the WAL started again from its beginning
  std::int64_t wal_pages = 0;            // in the WAL after the last commit
  std::int64_t wal_pages_max = 0;        // the most it held after a commit
  double background_seconds_max = 0;     // longest background pass
  double writer_seconds_max = 0;         // longest pass the writer ran (its commits waited)
};

class WalCheckpointer {
 public:
  // Opens its own read-write connection to the (existing, WAL-mode) file at
  // path and starts its thread.
  static Result<std::unique_ptr<WalCheckpointer>> start(const std::string& path,
                                                        WalCheckpointOptions options);
  ~WalCheckpointer();  // stops the thread (a pass under way finishes first)
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // Installs the WAL hook on the writer's connection. This replaces SQLite's
  // automatic checkpoint there, which is what this class is for.
  void attach_writer(sqlite3* writer_db);

  // Writer thread, between batches, holding the writer connection: runs the
  // last pass when a background pass asked for it, or a forced one when the
  // WAL has grown too large. Returns whether it ran a pass.
  bool checkpoint_if_due(sqlite3* writer_db);

  WalCheckpointStats stats() const;

 private:
  struct State;
  static int on_wal_commit(void* state, sqlite3* db, const char* name, int pages);
  explicit WalCheckpointer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace fairdraw
