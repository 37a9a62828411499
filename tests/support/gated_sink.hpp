// Test support: a Sink decorator around the real sink that can hold appends
// (and so their acks) until released, to observe a draw while it is in flight,
// hold the loading of live keys, to observe the engine while they come back,
// and fail lookups by idempotency key, as a database that cannot be read would.
#pragma once

#include <condition_variable>
#include <mutex>
#include <utility>
#include <vector>

#include "fairdraw/sink/sink.hpp"

namespace fairdraw::test {

class GatedSink final : public Sink {
 public:
  explicit GatedSink(Sink& inner) : inner_(inner) {}
  void hold() { std::lock_guard l(m_); held_ = true; }
  void release() {
    std::vector<std::pair<DrawRecord, Ack>> pending;
    {
      std::lock_guard l(m_);
      held_ = false;
      pending.swap(pending_);
    }
    for (auto& [r, a] : pending) inner_.append(std::move(r), std::move(a));
  }
  void append(DrawRecord record, Ack ack) override {
    {
      std::lock_guard l(m_);
      if (held_) {
        pending_.emplace_back(std::move(record), std::move(ack));
        return;
      }
    }
    inner_.append(std::move(record), std::move(ack));
  }
  void flush_and_stop() override { release(); inner_.flush_and_stop(); }
  bool healthy() const override { return inner_.healthy(); }
  SinkStats stats() const override { return inner_.stats(); }
  Result<std::optional<DrawRecord>> find_draw(std::string_view id) override {
    return inner_.find_draw(id);
  }
  Result<std::optional<DrawRecord>> find_by_idempotency_key(std::string_view a,
                                                            std::string_view k) override {
    {
      std::lock_guard l(m_);
      if (fail_key_lookups_) return make_error(ErrorKind::unavailable, "reading the draws failed (test)");
    }
    return inner_.find_by_idempotency_key(a, k);
  }
  Result<DrawPage> activity_draws(std::string_view a, std::int64_t after, std::size_t n) override {
    return inner_.activity_draws(a, after, n);
  }
  Result<DrawPage> user_draws(std::string_view u, std::optional<std::string_view> a,
                              std::optional<std::string_view> c, std::size_t n) override {
    return inner_.user_draws(u, a, c, n);
  }
  Result<std::vector<DrawRecord>> draws_since(std::string_view a, std::int64_t s,
                                              std::size_t n) override {
    return inner_.draws_since(a, s, n);
  }
  Result<std::vector<std::pair<std::string, std::int64_t>>> user_counts_since(
      std::string_view a, std::int64_t s) override {
    return inner_.user_counts_since(a, s);
  }
  Status save_activity(const StoredActivity& a) override { return inner_.save_activity(a); }
  Result<std::vector<StoredActivity>> load_activities() override { return inner_.load_activities(); }
  Status save_epoch(const EpochRecord& e) override { return inner_.save_epoch(e); }
  Result<std::vector<EpochRecord>> load_epochs(std::string_view a) override {
    return inner_.load_epochs(a);
  }
  Result<ActivityTotals> load_totals(std::string_view a, std::int64_t s,
                                     const AddUserCounts& add) override {
    return inner_.load_totals(a, s, add);
  }
  Result<LiveDraws> load_live_draws(std::string_view a, std::int64_t s, std::size_t n,
                                    const OnDraw& on_draw) override {
    {
      std::unique_lock l(m_);
      live_cv_.wait(l, [&] { return !live_held_; });
    }
    return inner_.load_live_draws(a, s, n, on_draw);
  }
  void fail_key_lookups(bool on) { std::lock_guard l(m_); fail_key_lookups_ = on; }
  // load_live_draws waits while they are held.
  void hold_live_draws() { std::lock_guard l(m_); live_held_ = true; }
  void release_live_draws() {
    {
      std::lock_guard l(m_);
      live_held_ = false;
    }
    live_cv_.notify_all();
  }

 private:
  Sink& inner_;
  std::mutex m_;
  std::condition_variable live_cv_;
  bool live_held_ = false;
  bool held_ = false;
  bool fail_key_lookups_ = false;
  std::vector<std::pair<DrawRecord, Ack>> pending_;
};

}  // namespace fairdraw::test
