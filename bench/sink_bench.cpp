// fairdraw_sink_bench: what SqliteSink's writer costs per row at a fixed batch size, without
// HTTP or a load generator beside it (so the figures hold on a shared machine).
//   fairdraw_sink_bench [--rows N] [--batch B] [--keys sequential|random] [--dir DIR]
//                       [--prefill N] [--synchronous full|normal]
// Appends N draws of one activity in commits of exactly B rows (batch_max = B and a long
// max_batch_delay: the writer waits until B rows are queued), waiting for each commit's acks
// before the next. Prints the writer thread's CPU time (/proc/self/task/TID/schedstat) and the
// bytes it passed to write() (wchar: the WAL frames) per row and per commit. --prefill first
// commits that many rows (in commits of 1024), so the indexes have the depth of a used file.
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <string>

#include "fairdraw/sink/sqlite_sink.hpp"

namespace {

struct Options {
  std::int64_t rows = 200000;
  std::size_t batch = 16;
  bool random_keys = false;
  std::string dir = "/tmp";
  std::int64_t prefill = 0;
  bool full_sync = true;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "fairdraw_sink_bench: %s\nusage: fairdraw_sink_bench [--rows N] [--batch B] "
               "[--keys sequential|random] [--dir DIR] [--prefill N] [--synchronous full|normal]\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) usage("missing value");
    const std::string value = argv[++i];
    if (arg == "--rows") {
      o.rows = std::stoll(value);
    } else if (arg == "--batch") {
      o.batch = static_cast<std::size_t>(std::stoull(value));
    } else if (arg == "--keys") {
      if (value != "sequential" && value != "random") usage("--keys: sequential or random");
      o.random_keys = value == "random";
    } else if (arg == "--dir") {
      o.dir = value;
    } else if (arg == "--prefill") {
      o.prefill = std::stoll(value);
    } else if (arg == "--synchronous") {
      if (value != "full" && value != "normal") usage("--synchronous: full or normal");
      o.full_sync = value == "full";
    } else {
      usage("unknown option");
    }
  }
  if (o.rows < 1 || o.batch < 1 || o.prefill < 0) usage("bad number");
  return o;
}

// The writer thread's id, found by its name.
std::string writer_task() {
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(entry.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name == "fd-sqlite-write") return entry.path().filename().string();
  }
  return {};
}

std::uint64_t cpu_ns(const std::string& task) {
  std::ifstream in("/proc/self/task/" + task + "/schedstat");
  std::uint64_t ns = 0;
  in >> ns;
  return ns;
}

std::uint64_t wchar(const std::string& task) {
  std::ifstream in("/proc/self/task/" + task + "/io");
  std::string key;
  std::uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "wchar:") return value;
  }
  return 0;
}

// Counts acks; wait() returns once `n` have arrived since the last wait.
class Acks {
 public:
  fairdraw::Sink::Ack ack() {
    return [this](bool durable) {
      std::lock_guard lock(mutex_);
      ++done_;
      if (!durable) ++refused_;
      cv_.notify_one();
    };
  }
  void wait(std::int64_t n) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return done_ >= n; });
    done_ -= n;
  }
  std::int64_t refused() {
    std::lock_guard lock(mutex_);
    return refused_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::int64_t done_ = 0;
  std::int64_t refused_ = 0;
};

class Records {
 public:
  explicit Records(bool random_keys) : random_keys_(random_keys), pid_(getpid()) {}

  fairdraw::DrawRecord next() {
    fairdraw::DrawRecord r;
    const std::int64_t ms = 1'795'000'000'000 + seq_ / 20;
    // A ULID's shape: 10 characters of time, then 16 random ones.
    static constexpr char kCrockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    r.draw_id.resize(26);
    std::uint64_t t = static_cast<std::uint64_t>(ms);
    for (int i = 9; i >= 0; --i, t >>= 5) {
      r.draw_id[static_cast<std::size_t>(i)] = kCrockford[t & 31];
    }
    std::uint64_t bits = rng_();
    for (std::size_t i = 10; i < 26; ++i, bits >>= 4) r.draw_id[i] = kCrockford[bits & 31];
    r.activity_id = "bench";
    r.seq = seq_;
    r.epoch = seq_ / 10000;
    r.slot = seq_ % 10000;
    if (random_keys_) {
      char text[40];
      std::snprintf(text, sizeof text, "u-%016llx", static_cast<unsigned long long>(rng_()));
      r.user_id = text;
      std::snprintf(text, sizeof text, "%016llx%016llx", static_cast<unsigned long long>(rng_()),
                    static_cast<unsigned long long>(rng_()));
      r.idempotency_key = text;
    } else {
      r.user_id = "lg-" + std::to_string(pid_) + "-" + std::to_string(seq_);
      r.idempotency_key = r.user_id;
    }
    if (seq_ % 10 == 0) {
      r.candidate_id = "a";
      r.prize_id = "a";
      r.prize_name = "A";
      r.won = true;
    }
    r.drawn_at_ms = ms;
    ++seq_;
    return r;
  }

 private:
  bool random_keys_;
  int pid_;
  std::int64_t seq_ = 0;
  std::mt19937_64 rng_{42};
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const std::string path = o.dir + "/fairdraw-sink-bench-" + std::to_string(getpid()) + ".db";
  fairdraw::SqliteSinkOptions options;
  options.path = path;
  options.synchronous = o.full_sync ? fairdraw::SqliteSinkOptions::Synchronous::full
                                    : fairdraw::SqliteSinkOptions::Synchronous::normal;
  options.batch_max = o.prefill > 0 ? 1024 : o.batch;
  options.max_batch_delay = std::chrono::milliseconds(10000);
  options.max_queue = 1'000'000;
  Records records(o.random_keys);
  Acks acks;
  int rc = 0;
  {
    auto opened = fairdraw::SqliteSink::open(options);
    if (!opened.ok()) {
      std::fprintf(stderr, "fairdraw_sink_bench: %s\n", opened.error().detail.c_str());
      return 1;
    }
    auto sink = std::move(opened.value());
    for (std::int64_t done = 0; done < o.prefill;) {
      const std::int64_t n = std::min<std::int64_t>(1024, o.prefill - done);
      for (std::int64_t i = 0; i < n; ++i) sink->append(records.next(), acks.ack());
      acks.wait(n);
      done += n;
    }
    if (o.prefill > 0) {
      // The prefill's writer goes; this one commits exactly `batch` rows at a time.
      sink.reset();
      options.batch_max = o.batch;
      auto again = fairdraw::SqliteSink::open(options);
      if (!again.ok()) {
        std::fprintf(stderr, "fairdraw_sink_bench: %s\n", again.error().detail.c_str());
        return 1;
      }
      sink = std::move(again.value());
    }
    const auto batch = static_cast<std::int64_t>(o.batch);
    for (int warm = 0; warm < 4; ++warm) {
      for (std::int64_t i = 0; i < batch; ++i) sink->append(records.next(), acks.ack());
      acks.wait(batch);
    }
    const std::string task = writer_task();
    const auto before = sink->stats();
    const std::uint64_t cpu0 = cpu_ns(task);
    const std::uint64_t bytes0 = wchar(task);
    const auto wall0 = std::chrono::steady_clock::now();
    std::int64_t rows = 0;
    while (rows < o.rows) {
      const std::int64_t n = std::min(batch, o.rows - rows);
      for (std::int64_t i = 0; i < n; ++i) sink->append(records.next(), acks.ack());
      acks.wait(n);
      rows += n;
    }
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    const double cpu = static_cast<double>(cpu_ns(task) - cpu0);
    const double bytes = static_cast<double>(wchar(task) - bytes0);
    const auto after = sink->stats();
    const double commits = static_cast<double>(after.committed_batches - before.committed_batches);
    const double committed = static_cast<double>(after.committed_rows - before.committed_rows);
    std::printf(
        "rows %.0f commits %.0f (%.2f rows/commit) keys %s prefill %lld sync %s\n"
        "writer CPU per row %.2f us, per commit %.1f us\n"
        "writer bytes written per row %.0f, per commit %.0f\n"
        "wall %.2f s (%.0f rows/s)\n",
        committed, commits, committed / std::max(commits, 1.0),
        o.random_keys ? "random" : "sequential", static_cast<long long>(o.prefill),
        o.full_sync ? "full" : "normal", cpu / 1e3 / std::max(committed, 1.0),
        cpu / 1e3 / std::max(commits, 1.0), bytes / std::max(committed, 1.0),
        bytes / std::max(commits, 1.0), wall, committed / wall);
    if (acks.refused() != 0) {
      std::fprintf(stderr, "fairdraw_sink_bench: %lld rows refused\n",
                   static_cast<long long>(acks.refused()));
      rc = 1;
    }
  }
  std::error_code ignored;
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix, ignored);
  return rc;
}
