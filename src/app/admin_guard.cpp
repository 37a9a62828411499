// Admin brute-force throttling (see admin_guard.hpp). The admin API is low
// volume, so one mutex over a hash map with an LRU list is enough; what matters
// is that the map is bounded and that a locked address learns nothing more.
#include "fairdraw/app/admin_guard.hpp"

#include <algorithm>

namespace fairdraw::app {

AdminGuard::AdminGuard(AdminGuardOptions options) : options_(options) {
  options_.max_failures = std::max<std::int64_t>(1, options_.max_failures);
  options_.window_ms = std::max<std::int64_t>(1, options_.window_ms);
  options_.max_addresses = std::max<std::size_t>(1, options_.max_addresses);
}

// A window is over once window_ms have passed since its first failure. A clock
// that went backwards keeps the window (it never unlocks early).
bool AdminGuard::expired(const Entry& e, std::int64_t now_ms) const {
  return now_ms >= e.window_start_ms && now_ms - e.window_start_ms >= options_.window_ms;
}

std::int64_t AdminGuard::retry_after_s(const Entry& e, std::int64_t now_ms) const {
  const std::int64_t left_ms = e.window_start_ms + options_.window_ms - std::min(now_ms, e.window_start_ms + options_.window_ms);
  return std::max<std::int64_t>(1, (left_ms + 999) / 1000);
}

AdminGuard::Check AdminGuard::check(std::string_view address, std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  const auto it = entries_.find(std::string(address));
  if (it == entries_.end()) return {};
  Entry& e = it->second;
  if (expired(e, now_ms)) {
    lru_.erase(e.lru);
    entries_.erase(it);
    return {};
  }
  if (e.failures < options_.max_failures) return {};
  // Requests while locked neither count nor extend the lockout; they do keep
  // the entry from being evicted ahead of quieter ones.
  lru_.splice(lru_.begin(), lru_, e.lru);
  return {true, retry_after_s(e, now_ms)};
}

AdminGuard::Failure AdminGuard::record_failure(std::string_view address, std::int64_t now_ms) {
  std::lock_guard lock(mu_);
  std::string key(address);
  auto it = entries_.find(key);
  if (it != entries_.end() && expired(it->second, now_ms)) {
    lru_.erase(it->second.lru);
    entries_.erase(it);
    it = entries_.end();
  }
  if (it == entries_.end()) {
    while (entries_.size() >= options_.max_addresses && !lru_.empty()) {
      entries_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key);
    it = entries_.emplace(std::move(key), Entry{now_ms, 0, lru_.begin()}).first;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  Entry& e = it->second;
  const bool was_locked = e.failures >= options_.max_failures;
  if (!was_locked) ++e.failures;  // capped: the count only has to reach the limit
  Failure f;
  f.failures = e.failures;
  f.now_locked = !was_locked && e.failures >= options_.max_failures;
  if (f.now_locked) f.retry_after_s = retry_after_s(e, now_ms);
  return f;
}

void AdminGuard::record_success(std::string_view address) {
  std::lock_guard lock(mu_);
  const auto it = entries_.find(std::string(address));
  if (it == entries_.end()) return;
  lru_.erase(it->second.lru);
  entries_.erase(it);
}

std::size_t AdminGuard::tracked_addresses() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace fairdraw::app
