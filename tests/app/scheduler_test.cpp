// Scheduler: periodic runs, skipped ticks for slow jobs (never overlapping), stop() semantics, and stats.
#include "fairdraw/app/scheduler.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace fairdraw::app {
namespace {

using namespace std::chrono_literals;

// Polls `done` until it holds or `limit` passes (generous: CI machines and sanitizers are slow).
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

SchedulerStats stats_of(const Scheduler& scheduler, const std::string& job) {
  for (const SchedulerStats& s : scheduler.stats()) {
    if (s.job == job) return s;
  }
  ADD_FAILURE() << "no stats for job " << job;
  return {};
}

// Tracks how many runs of a job overlap.
struct ConcurrencyProbe {
  std::atomic<int> current{0};
  std::atomic<int> max{0};
  std::atomic<int> runs{0};

  void enter() {
    const int now = current.fetch_add(1) + 1;
    int seen = max.load();
    while (now > seen && !max.compare_exchange_weak(seen, now)) {
    }
  }
  void leave() {
    current.fetch_sub(1);
    runs.fetch_add(1);
  }
};

TEST(SchedulerTest, JobRunsRepeatedly) {
  Scheduler scheduler(1);  // one thread: a tick cannot fire while the previous run is going
  std::atomic<int> runs{0};
  scheduler.add("tick", 5ms, [&] { runs.fetch_add(1); });
  scheduler.start();
  EXPECT_TRUE(wait_until([&] { return runs.load() >= 5; })) << "only " << runs.load() << " runs";
  scheduler.stop();
  const SchedulerStats s = stats_of(scheduler, "tick");
  EXPECT_EQ(s.runs, static_cast<std::uint64_t>(runs.load())) << "stats count every run";
  EXPECT_EQ(s.skipped, 0U) << "a fast job skips nothing";
}

TEST(SchedulerTest, NothingRunsBeforeStart) {
  Scheduler scheduler(1);
  std::atomic<int> runs{0};
  scheduler.add("tick", 1ms, [&] { runs.fetch_add(1); });
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(runs.load(), 0);
  scheduler.stop();
}

TEST(SchedulerTest, SlowJobSkipsTicksAndNeverOverlaps) {
  constexpr auto kPeriod = 20ms;
  Scheduler scheduler(4);  // spare threads, so an overlap would have the chance to happen
  ConcurrencyProbe probe;
  scheduler.add("slow", kPeriod, [&] {
    probe.enter();
    std::this_thread::sleep_for(3 * kPeriod);
    probe.leave();
  });
  scheduler.start();
  EXPECT_TRUE(wait_until([&] { return probe.runs.load() >= 4; })) << "only " << probe.runs.load() << " runs";
  scheduler.stop();

  EXPECT_EQ(probe.max.load(), 1) << "runs of one job must never overlap";
  EXPECT_EQ(probe.current.load(), 0) << "stop() returned while a run was going";
  const SchedulerStats s = stats_of(scheduler, "slow");
  EXPECT_EQ(s.runs, static_cast<std::uint64_t>(probe.runs.load()));
  // About 2 skips per run; only "some" is asserted, so a loaded machine cannot make it flaky.
  EXPECT_GT(s.skipped, 0U) << "a run lasting 3 periods must skip ticks while it runs (runs " << s.runs << ")";
  EXPECT_GE(s.last_run_seconds, 0.9 * std::chrono::duration<double>(3 * kPeriod).count())
      << "last_run_seconds is the duration of the last run";
}

TEST(SchedulerTest, SlowJobDoesNotStallOthers) {
  Scheduler scheduler(2);
  std::atomic<bool> slow_running{false};
  std::atomic<int> fast_runs_during_slow{0};
  std::atomic<bool> release{false};
  scheduler.add("slow", 5ms, [&] {
    slow_running.store(true);
    wait_until([&] { return release.load(); });
    slow_running.store(false);
  });
  scheduler.add("fast", 5ms, [&] {
    if (slow_running.load()) fast_runs_during_slow.fetch_add(1);
  });
  scheduler.start();
  EXPECT_TRUE(wait_until([&] { return fast_runs_during_slow.load() >= 5; }))
      << "the fast job ran " << fast_runs_during_slow.load() << " times while the slow one held a thread";
  release.store(true);
  scheduler.stop();
}

TEST(SchedulerTest, StopWaitsForARunningJob) {
  Scheduler scheduler(2);
  std::atomic<bool> started{false};
  std::atomic<bool> finished{false};
  std::atomic<int> runs{0};
  scheduler.add("long", 5ms, [&] {
    if (runs.fetch_add(1) > 0) return;
    started.store(true);
    std::this_thread::sleep_for(200ms);
    finished.store(true);
  });
  scheduler.start();
  ASSERT_TRUE(wait_until([&] { return started.load(); }));
  scheduler.stop();
  EXPECT_TRUE(finished.load()) << "stop() returned before the running job finished";

  const int after_stop = runs.load();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(runs.load(), after_stop) << "no run may start after stop()";
  EXPECT_EQ(scheduler.pending_timers(), 0U) << "no timer stays armed after stop()";
}

TEST(SchedulerTest, StopIsIdempotent) {
  Scheduler scheduler(2);
  std::atomic<int> runs{0};
  scheduler.add("tick", 2ms, [&] { runs.fetch_add(1); });
  scheduler.start();
  ASSERT_TRUE(wait_until([&] { return runs.load() >= 1; }));
  scheduler.stop();
  const int after_stop = runs.load();
  scheduler.stop();
  scheduler.stop();
  EXPECT_EQ(runs.load(), after_stop);
  // The destructor stops once more.
}

TEST(SchedulerTest, StopFromManyThreadsAtOnce) {
  Scheduler scheduler(2);
  std::atomic<int> runs{0};
  scheduler.add("tick", 1ms, [&] {
    runs.fetch_add(1);
    std::this_thread::sleep_for(3ms);
  });
  scheduler.start();
  ASSERT_TRUE(wait_until([&] { return runs.load() >= 2; }));
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 4; ++i) stoppers.emplace_back([&] { scheduler.stop(); });
  for (auto& t : stoppers) t.join();
  const int after_stop = runs.load();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(runs.load(), after_stop);
}

// stop() while ticks fire back to back on several threads: the cancellation must not race
// with a tick re-arming the same timer (ThreadSanitizer checks this one).
TEST(SchedulerTest, StopWhileTicksAreFiring) {
  for (int round = 0; round < 50; ++round) {
    Scheduler scheduler(4);
    std::atomic<int> runs{0};
    for (int j = 0; j < 3; ++j) scheduler.add("busy" + std::to_string(j), 0ms, [&] { runs.fetch_add(1); });
    scheduler.start();
    ASSERT_TRUE(wait_until([&] { return runs.load() >= 20; })) << "round " << round;
    scheduler.stop();
    const int after_stop = runs.load();
    std::this_thread::sleep_for(1ms);
    ASSERT_EQ(runs.load(), after_stop) << "a run started after stop() in round " << round;
  }
}

TEST(SchedulerTest, StopWithoutStart) {
  std::atomic<int> runs{0};
  {
    Scheduler never_started(2);
    never_started.add("tick", 1ms, [&] { runs.fetch_add(1); });
    never_started.stop();
    never_started.stop();
  }
  { Scheduler destroyed_only(1); }
  EXPECT_EQ(runs.load(), 0);
}

// Runs in a child process: a crash (std::terminate on an unjoined thread) fails
// this test alone instead of aborting the whole test binary.
TEST(SchedulerTest, StartAfterStopDoesNothing) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        std::atomic<int> runs{0};
        {
          Scheduler stopped_first(2);
          stopped_first.add("tick", 1ms, [&] { runs.fetch_add(1); });
          stopped_first.stop();
          stopped_first.start();  // too late: a stopped scheduler stays stopped
          std::this_thread::sleep_for(30ms);
          stopped_first.stop();
        }  // and its destructor must not crash
        std::exit(runs.load() == 0 ? 0 : 3);
      },
      ::testing::ExitedWithCode(0), "")
      << "exit code 3: a job ran after stop(); a signal: the scheduler crashed";
}

TEST(SchedulerTest, StatsNameEveryJobInOrder) {
  Scheduler scheduler(0);
  EXPECT_EQ(scheduler.thread_count(), 1U) << "0 threads means 1";
  EXPECT_TRUE(scheduler.stats().empty());
  const std::vector<std::string> names = {"epoch_preparation", "idempotency_expiry", "watchdog"};
  for (const std::string& name : names) scheduler.add(name, 1h, [] {});
  const auto before = scheduler.stats();
  ASSERT_EQ(before.size(), names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(before[i].job, names[i]);
    EXPECT_EQ(before[i].runs, 0U);
    EXPECT_EQ(before[i].skipped, 0U);
    EXPECT_EQ(before[i].last_run_seconds, 0.0);
  }
  EXPECT_EQ(scheduler.pending_timers(), 0U) << "timers are armed at start()";
  scheduler.start();
  EXPECT_EQ(scheduler.pending_timers(), names.size()) << "one armed timer per job";
  scheduler.stop();
  EXPECT_EQ(scheduler.pending_timers(), 0U);
  EXPECT_EQ(Scheduler(3).thread_count(), 3U);
}

}  // namespace
}  // namespace fairdraw::app
