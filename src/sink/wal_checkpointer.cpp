// WalCheckpointer: see the header for why. The background thread only ever
// runs PASSIVE checkpoints: they never wait for the writer or for readers, so
// the writer's commits go on while a pass copies pages and fsyncs the file.
#include "fairdraw/sink/wal_checkpointer.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "fairdraw/thread_name.hpp"

namespace fairdraw {

using Clock = std::chrono::steady_clock;

struct WalCheckpointer::State {
  WalCheckpointOptions options;
  sqlite3* db = nullptr;  // the background thread's own connection
  std::thread thread;

  // Held for the length of every pass, background or writer: a forced pass
  // waits for a background one to end, then copies the rest (back-pressure).
  std::mutex pass_mutex;
  mutable std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::int64_t wal_pages = 0;  // frames in the WAL after the last commit
  std::int64_t resume_at = 0;  // the next background pass waits for the WAL to reach this
  bool finish_requested = false;
  WalCheckpointStats stats;

  ~State() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    if (thread.joinable()) thread.join();
    sqlite3_close_v2(db);
  }

  bool pass_due() const { return wal_pages >= std::max(options.start_pages, resume_at); }

  // From the writer's WAL hook, after each commit, holding the writer connection.
  void on_commit(std::int64_t pages) {
    bool due = false;
    {
      std::lock_guard lock(mutex);
      if (pages < wal_pages) {
        // The WAL started again from its beginning: everything before was copied.
        ++stats.wal_restarts;
        resume_at = 0;
      }
      wal_pages = pages;
      stats.wal_pages_max = std::max(stats.wal_pages_max, wal_pages);
      due = pass_due();
    }
    if (due) wake.notify_one();
  }

  void run() {
    std::unique_lock lock(mutex);
    for (;;) {
      wake.wait(lock, [&] { return stopping || pass_due(); });
      if (stopping) return;
      lock.unlock();
      int log = -1;
      int copied = -1;
      int rc = SQLITE_OK;
      double seconds = 0;
      {
        std::lock_guard pass(pass_mutex);
        const auto begun = Clock::now();
        rc = sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
        seconds = std::chrono::duration<double>(Clock::now() - begun).count();
      }
      lock.lock();
      ++stats.background_passes;
      stats.background_seconds_max = std::max(stats.background_seconds_max, seconds);
      if (rc == SQLITE_OK && copied >= 0) {
        // Frames committed during the pass are not in it. Few left: the writer
        // copies them itself before its next batch (and the WAL restarts);
        // many: pass again at once, over just those.
        if (wal_pages - copied <= options.finish_pages) {
          finish_requested = true;
          resume_at = copied + options.finish_pages;
        } else {
          // Not caught up: the next pass waits for a full window again, since
          // back-to-back small passes copy the same hot pages over and over.
          // Should the WAL reach force_pages first, the writer finishes it.
          resume_at = copied + options.start_pages;
        }
      } else {
        // SQLITE_BUSY: the writer is checkpointing itself. Anything else: try
        // again once the WAL has grown, rather than spin on an error.
        resume_at = wal_pages + options.finish_pages;
      }
    }
  }
};

int WalCheckpointer::on_wal_commit(void* state, sqlite3*, const char*, int pages) {
  static_cast<State*>(state)->on_commit(pages);
  return SQLITE_OK;
}

Result<std::unique_ptr<WalCheckpointer>> WalCheckpointer::start(const std::string& path,
                                                                WalCheckpointOptions options) {
  auto state = std::make_unique<State>();
  state->options = options;
  const int rc =
      sqlite3_open_v2(path.c_str(), &state->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    return make_error(ErrorKind::unavailable, "opening the checkpoint connection to '" + path +
                                                  "': " + sqlite3_errmsg(state->db));
  }
  // A checkpoint fsyncs the WAL before copying and the file after, as the
  // writer's own would: the same synchronous setting as the writer.
  const char* sync = options.full_sync ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL";
  if (sqlite3_exec(state->db, sync, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return make_error(ErrorKind::unavailable, "setting up the checkpoint connection to '" + path +
                                                  "': " + sqlite3_errmsg(state->db));
  }
  State* raw = state.get();
  state->thread = std::thread([raw] {
    name_this_thread("fd-checkpoint");
    raw->run();
  });
  return std::unique_ptr<WalCheckpointer>(new WalCheckpointer(std::move(state)));
}

WalCheckpointer::WalCheckpointer(std::unique_ptr<State> state) : state_(std::move(state)) {}

WalCheckpointer::~WalCheckpointer() = default;

void WalCheckpointer::attach_writer(sqlite3* writer_db) {
  sqlite3_wal_hook(writer_db, on_wal_commit, state_.get());
}

bool WalCheckpointer::checkpoint_if_due(sqlite3* writer_db) {
  bool forced = false;
  {
    std::lock_guard lock(state_->mutex);
    const bool finish = std::exchange(state_->finish_requested, false);
    forced = !finish && state_->wal_pages >= state_->options.force_pages;
    if (!finish && !forced) return false;
  }
  const auto begun = Clock::now();
  {
    std::lock_guard pass(state_->pass_mutex);
    sqlite3_wal_checkpoint_v2(writer_db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - begun).count();
  std::lock_guard lock(state_->mutex);
  ++state_->stats.writer_passes;
  if (forced) ++state_->stats.forced_passes;
  state_->stats.writer_seconds_max = std::max(state_->stats.writer_seconds_max, seconds);
  return true;
}

WalCheckpointStats WalCheckpointer::stats() const {
  std::lock_guard lock(state_->mutex);
  WalCheckpointStats s = state_->stats;
  s.wal_pages = state_->wal_pages;
  return s;
}

}  // namespace fairdraw
