// Scheduler: one steady_timer per job on a private io_context. Each tick
// re-arms first, then runs the job unless its previous run is still going.
#include "fairdraw/app/scheduler.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <mutex>
#include <thread>

#include "fairdraw/app/log.hpp"
#include "fairdraw/thread_name.hpp"

namespace fairdraw::app {

namespace asio = boost::asio;

namespace {
struct Job {
  std::string name;
  std::chrono::milliseconds period;
  std::function<void()> run;
  std::mutex timer_mutex;  // a steady_timer is not thread-safe: re-arm and cancel race
  std::unique_ptr<asio::steady_timer> timer;
  std::atomic<bool> running{false};
  std::atomic<std::uint64_t> runs{0};
  std::atomic<std::uint64_t> skipped{0};
  std::atomic<std::int64_t> last_run_us{0};
};
}  // namespace

struct Scheduler::Impl {
  explicit Impl(unsigned n) : threads_wanted(n == 0 ? 1 : n) {}
  unsigned threads_wanted;
  asio::io_context io;
  std::vector<std::unique_ptr<Job>> jobs;
  std::vector<std::thread> threads;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> armed{0};
  std::mutex stop_mutex;
  bool started = false;
  bool stopped = false;

  void arm(Job& job) {
    std::lock_guard lock(job.timer_mutex);
    if (stopping.load()) return;
    armed.fetch_add(1);
    job.timer->expires_after(job.period);
    job.timer->async_wait([this, &job](const boost::system::error_code& ec) {
      armed.fetch_sub(1);
      if (ec || stopping.load()) return;
      arm(job);  // next tick first, so a slow run shows up as skipped ticks
      if (job.running.exchange(true)) {
        job.skipped.fetch_add(1);
        return;
      }
      const auto started_at = std::chrono::steady_clock::now();
      job.run();
      job.last_run_us.store(std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::steady_clock::now() - started_at)
                                .count());
      job.runs.fetch_add(1);
      job.running.store(false);
    });
  }
};

Scheduler::Scheduler(unsigned threads) : impl_(std::make_unique<Impl>(threads)) {}

Scheduler::~Scheduler() { stop(); }

void Scheduler::add(std::string name, std::chrono::milliseconds period, std::function<void()> job) {
  auto j = std::make_unique<Job>();
  j->name = std::move(name);
  j->period = period;
  j->run = std::move(job);
  j->timer = std::make_unique<asio::steady_timer>(impl_->io);
  impl_->jobs.push_back(std::move(j));
}

void Scheduler::start() {
  std::lock_guard lock(impl_->stop_mutex);
  if (impl_->started || impl_->stopped) return;
  impl_->started = true;
  for (auto& job : impl_->jobs) impl_->arm(*job);
  for (unsigned i = 0; i < impl_->threads_wanted; ++i) {
    impl_->threads.emplace_back([this] {
      name_this_thread("fd-scheduler");
      try {
        impl_->io.run();
      } catch (const std::exception& e) {
        log::error("scheduler thread stopped by an exception", {{"error", e.what()}});
      }
    });
  }
}

void Scheduler::stop() {
  std::lock_guard lock(impl_->stop_mutex);
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->stopping.store(true);
  for (auto& job : impl_->jobs) {
    asio::post(impl_->io, [&job] {
      std::lock_guard timer_lock(job->timer_mutex);
      job->timer->cancel();
    });
  }
  // Timers cancelled, no new work: run() returns once running jobs end.
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
}

std::vector<SchedulerStats> Scheduler::stats() const {
  std::vector<SchedulerStats> out;
  for (const auto& job : impl_->jobs) {
    out.push_back(SchedulerStats{job->name, job->runs.load(), job->skipped.load(),
                                 static_cast<double>(job->last_run_us.load()) / 1e6});
  }
  return out;
}

std::size_t Scheduler::pending_timers() const { return impl_->armed.load(); }
unsigned Scheduler::thread_count() const { return impl_->threads_wanted; }

}  // namespace fairdraw::app
