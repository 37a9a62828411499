// The one scheduler of periodic background jobs (epoch preparation, expiry,
// watchdog), on Asio timers with its own small thread pool so a long job never
// stalls the io threads. A job whose previous run is still going skips its
// tick and counts the skip: runs never overlap or pile up.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fairdraw/app/metrics.hpp"

namespace fairdraw::app {

class Scheduler {
 public:
  explicit Scheduler(unsigned threads = 2);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Registers a job; jobs start ticking at start(). Not after start().
  void add(std::string name, std::chrono::milliseconds period, std::function<void()> job);
  void start();
  // Cancels the timers and waits for running jobs to finish. Idempotent.
  void stop();

  std::vector<SchedulerStats> stats() const;
  std::size_t pending_timers() const;
  unsigned thread_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fairdraw::app
